"""5. Start-up: `labconsole --help` (and the TUI's first paint) against `python -c pass`.

Each command runs in a fresh interpreter, alternating with the anchor, many times; the figure
is the median wall time from spawn to exit (or to a ready marker on the terminal). What
`--help` imports is attributed with `python -X importtime`.

The TUI's first paint slots in through `first_paint_command()`: when `labconsole.tui` exists,
the console is started on a pseudo-terminal with `LABCONSOLE_EXIT_AFTER_FIRST_PAINT=1`; the
TUI is expected to exit right after its first screen is drawn (e.g. `call_after_refresh(exit)`
on mount), so spawn-to-exit bounds the first paint from above.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bench.core import ROOT, ChildCpu, Context, Result, alternate, median

HELP_TARGET_S = 0.3
FIRST_PAINT_TARGET_S = 1.0
FIRST_PAINT_ENV = "LABCONSOLE_EXIT_AFTER_FIRST_PAINT"


def labconsole_argv() -> list[str]:
    """The installed console script next to this interpreter, else `python -m labconsole`."""
    script = Path(sys.executable).parent / "labconsole"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "labconsole"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # this checkout for `bench`; a PYTHONPATH given first (an older labconsole, for a before/after) wins
    env["PYTHONPATH"] = (env["PYTHONPATH"] + os.pathsep if env.get("PYTHONPATH") else "") + str(ROOT)
    return env


def time_command(argv: list[str], env: dict | None = None, ready: bytes | None = None, pty: bool = False, timeout: float = 60.0) -> float:
    """Seconds from spawn until the process exits, or until `ready` appears in its output.

    With `pty`, the command gets a pseudo-terminal (a TUI needs one) and its output is read
    from the terminal's master side.
    """
    env = env or _env()
    if not pty:
        t0 = time.perf_counter()
        if ready is None:
            subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout, check=False)
            return time.perf_counter() - t0
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return _until_ready(proc, proc.stdout.fileno(), ready, t0, timeout)
    import pty as _pty

    master, slave = _pty.openpty()
    env = dict(env, TERM=env.get("TERM", "xterm-256color"), COLUMNS="160", LINES="48")
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True, start_new_session=True)
    finally:
        os.close(slave)
    try:
        return _until_ready(proc, master, ready, t0, timeout)
    finally:
        os.close(master)


def _until_ready(proc: subprocess.Popen, fd: int, ready: bytes | None, t0: float, timeout: float) -> float:
    import select

    seen = b""
    found: float | None = None
    try:
        while True:
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"{proc.args!r} did not finish in {timeout:g} s")
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the pty's other side closed
                    chunk = b""
                if chunk:
                    seen = (seen + chunk)[-4096:]
                    if ready is not None and found is None and ready in seen:
                        found = time.perf_counter() - t0
                        break
                elif proc.poll() is not None:
                    break
            elif proc.poll() is not None:
                break
        end = found if found is not None else time.perf_counter() - t0
        return end
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def timed(argv: list[str], env: dict | None = None, **kw) -> dict:
    """{"wall": s, "cpu": s} of one run of `argv` (see time_command)."""
    with ChildCpu() as c:
        wall = time_command(argv, env, **kw)
    return {"wall": wall, "cpu": c.cpu_s}


def first_paint_command() -> list[str] | None:
    """The TUI command to time, or None while there is no TUI in this checkout."""
    try:
        import importlib.util

        if importlib.util.find_spec("labconsole.tui") is None:
            return None
    except ImportError:
        return None
    return labconsole_argv() + ["tui"]


def import_breakdown(argv_tail: list[str], top: int = 8) -> list[tuple[str, float]]:
    """Cumulative import time by top-level package for `python -X importtime -m labconsole ARGS`."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "labconsole", *argv_tail],
        env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )
    per: dict[str, float] = {}
    pat = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")
    for line in out.stderr.splitlines():
        m = pat.match(line)
        if not m:
            continue
        self_us, name = int(m.group(1)), m.group(4)
        per[name.split(".")[0]] = per.get(name.split(".")[0], 0.0) + self_us / 1e6
    return sorted(per.items(), key=lambda kv: -kv[1])[:top]


def run(ctx: Context) -> Result:
    res = Result("startup", 5, "Start-up: `labconsole --help` vs `python -c pass`")
    reps = ctx.pick(21, 7)
    lc = labconsole_argv()
    anchor = [sys.executable, "-c", "pass"]
    env = _env()
    for argv in (anchor, lc + ["--help"]):  # warm the page cache and .pyc files once
        time_command(argv, env)
    ctx.log(f"timing {' '.join(Path(a).name for a in lc)} --help against python -c pass, {reps} alternating runs each")
    runs = alternate({"pass": lambda: timed(anchor, env), "help": lambda: timed(lc + ["--help"], env)}, reps)
    base, helpt = median([r["wall"] for r in runs["pass"]]), median([r["wall"] for r in runs["help"]])
    res.add("`labconsole --help` wall time", helpt, "s", anchor=base, anchor_label="python -c pass",
            target=f"< {HELP_TARGET_S} s", met=helpt < HELP_TARGET_S)
    res.add("`labconsole --help` CPU time", median([r["cpu"] for r in runs["help"]]), "s",
            anchor=median([r["cpu"] for r in runs["pass"]]), anchor_label="python -c pass")
    res.add("labconsole's own share of the wall time (help - pass)", helpt - base, "s")
    res.details["runs_s"] = runs
    res.details["command"] = lc + ["--help"]
    res.details["imports_self_s_by_package"] = import_breakdown(["--help"])

    tui = first_paint_command()
    if tui is None:
        res.notes.append("TUI first paint: no labconsole.tui in this checkout yet; the harness times it once it lands "
                         f"(it runs `{' '.join(Path(a).name for a in tui or lc + ['tui'])}` on a pty with {FIRST_PAINT_ENV}=1)")
    else:
        penv = dict(env, **{FIRST_PAINT_ENV: "1"})
        try:
            time_command(tui, penv, pty=True, timeout=30)  # warm-up
            paint = alternate({"pass": lambda: timed(anchor, env), "paint": lambda: timed(tui, penv, pty=True, timeout=30)}, ctx.pick(9, 3))
            p = median([r["wall"] for r in paint["paint"]])
            res.add("TUI first paint (spawn to exit after first paint)", p, "s", anchor=median([r["wall"] for r in paint["pass"]]), anchor_label="python -c pass",
                    target=f"< {FIRST_PAINT_TARGET_S} s", met=p < FIRST_PAINT_TARGET_S)
            res.details["first_paint_runs_s"] = paint
        except TimeoutError as exc:
            res.notes.append(f"TUI first paint not measured: {exc} (does the TUI honour {FIRST_PAINT_ENV}=1?)")
    top = ", ".join(f"{name} {s * 1000:.0f} ms" for name, s in res.details["imports_self_s_by_package"][:5])
    res.notes.append(f"imports during --help (self time by package): {top}")
    return res
