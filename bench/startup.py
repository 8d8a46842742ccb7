"""5. Start-up: `labconsole --help` and the TUI's first paint, against `python -c pass`.

Each command runs in a fresh interpreter, alternating with the anchor, many times; the figure
is the median wall time. What `--help` imports is attributed with `python -X importtime`.

The TUI's first paint: `labconsole tui` (the default bench profile) runs on a pseudo-terminal
of 160x48 with `LABCONSOLE_EXIT_AFTER_FIRST_PAINT=1`, and the benchmark reads what the console
writes to the terminal. The first paint is the moment every row of the screen has been drawn
(the terminal holds a whole screen: the escape sequences position the cursor on all 48 rows);
the console then exits by itself, and spawn-to-exit (teardown and interpreter exit included)
is reported beside it. What the console imports before it can paint is attributed with
`python -X importtime` as for `--help`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.core import ROOT, ChildCpu, Context, Result, alternate, median

HELP_TARGET_S = 0.3
FIRST_PAINT_TARGET_S = 0.5  # issue 15
FIRST_PAINT_ENV = "LABCONSOLE_EXIT_AFTER_FIRST_PAINT"
# What `labconsole tui` imports before it builds the app (for the import breakdown).
TUI_IMPORTS = "import labconsole.cli, labconsole.tui.app, labconsole.profile as p; p.load_profile(p.default_profile_path())"


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
    # The console reopens the profile it had open last: an empty state folder keeps it on the
    # built-in bench (never the operator's meters) and leaves their choice untouched.
    env["LABCONSOLE_STATE_DIR"] = _STATE_DIR
    # The warm-up run writes the .pyc files every later run reads, as an installed labconsole
    # has them; PYTHONDONTWRITEBYTECODE (set in some shells and CI images) would leave every
    # run compiling labconsole's sources again (measured: 60-70 ms of the first paint).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


_STATE_DIR = str(Path(tempfile.gettempdir()) / "labconsole-bench-state")  # nothing is written there: no --profile


def time_command(argv: list[str], env: dict | None = None, ready: bytes | None = None, timeout: float = 60.0) -> float:
    """Seconds from spawn until the process exits, or until `ready` appears in its output."""
    env = env or _env()
    t0 = time.perf_counter()
    if ready is None:
        subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout, check=False)
        return time.perf_counter() - t0
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return _until_ready(proc, proc.stdout.fileno(), ready, t0, timeout)


_ROW_MOVE = re.compile(rb"\x1b\[(\d+);\d+H")


def time_first_paint(argv: list[str], env: dict, size: tuple[int, int] = (160, 48), timeout: float = 60.0) -> dict:
    """Run a TUI on a pseudo-terminal of `size` (columns, rows): {"paint": seconds from spawn
    until every row has been drawn (None if never), "exit": seconds until it exited, "cpu":
    the child's CPU seconds}. The TUI is expected to exit by itself after its first paint."""
    import fcntl
    import pty as _pty
    import select
    import struct
    import termios

    cols, rows = size
    master, slave = _pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = dict(env, TERM=env.get("TERM", "xterm-256color"), COLUMNS=str(cols), LINES=str(rows))
    drawn: set[int] = set()
    paint = None
    tail = b""
    with ChildCpu() as c:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True, start_new_session=True)
        finally:
            os.close(slave)
        try:
            while True:
                if time.perf_counter() - t0 > timeout:
                    raise TimeoutError(f"{' '.join(argv)} did not exit within {timeout:g} s")
                r, _, _ = select.select([master], [], [], 0.05)
                chunk = b""
                if r:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # the terminal's other side closed: the process is gone
                        chunk = b""
                if chunk:
                    if paint is None:
                        buf = tail + chunk  # a sequence cut between two reads
                        drawn.update(int(m.group(1)) for m in _ROW_MOVE.finditer(buf))
                        tail = buf[-16:]
                        if all(i in drawn for i in range(1, rows + 1)):
                            paint = time.perf_counter() - t0
                    continue
                if proc.poll() is not None:
                    break
            end = time.perf_counter() - t0
        finally:
            os.close(master)
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
    return {"paint": paint, "exit": end, "cpu": c.cpu_s, "rc": proc.returncode}


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


def import_breakdown(python_args: list[str], top: int = 8) -> list[tuple[str, float]]:
    """Import self time by top-level package for `python -X importtime ARGS`."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", *python_args],
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
    res = Result("startup", 5, "Start-up: `labconsole --help` and the TUI's first paint vs `python -c pass`")
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
    res.details["imports_self_s_by_package"] = import_breakdown(["-m", "labconsole", "--help"])

    tui = first_paint_command()
    if tui is None:
        res.notes.append("TUI first paint: no labconsole.tui in this checkout")
    else:
        penv = dict(env, **{FIRST_PAINT_ENV: "1"})
        try:
            time_first_paint(tui, penv)  # warm-up (page cache, .pyc files)
            paint = alternate({"pass": lambda: timed(anchor, env), "paint": lambda: time_first_paint(tui, penv)}, ctx.pick(11, 3))
        except TimeoutError as exc:
            res.notes.append(f"TUI first paint not measured: {exc} (does it honour {FIRST_PAINT_ENV}=1?)")
        else:
            base_p = median([r["wall"] for r in paint["pass"]])
            painted = [r["paint"] for r in paint["paint"] if r["paint"] is not None]
            if len(painted) < len(paint["paint"]):
                res.notes.append(f"TUI first paint: {len(paint['paint']) - len(painted)} run(s) exited without drawing every row")
            p = median(painted) if painted else None
            res.add("TUI first paint (spawn to a whole screen on the terminal)", p, "s", anchor=base_p, anchor_label="python -c pass",
                    target=f"< {FIRST_PAINT_TARGET_S} s", met=p is not None and p < FIRST_PAINT_TARGET_S)
            res.add("TUI spawn to exit after its first paint (teardown included)", median([r["exit"] for r in paint["paint"]]), "s",
                    anchor=base_p, anchor_label="python -c pass")
            res.add("TUI CPU time, spawn to exit", median([r["cpu"] for r in paint["paint"]]), "s",
                    anchor=median([r["cpu"] for r in paint["pass"]]), anchor_label="python -c pass")
            res.details["first_paint_runs_s"] = paint
            res.details["first_paint_command"] = tui
            res.details["imports_self_s_by_package_tui"] = import_breakdown(["-c", TUI_IMPORTS], top=10)
            top_tui = ", ".join(f"{name} {s * 1000:.0f} ms" for name, s in res.details["imports_self_s_by_package_tui"][:6])
            res.notes.append(f"imports before the TUI's first paint (self time by package): {top_tui}")
    top = ", ".join(f"{name} {s * 1000:.0f} ms" for name, s in res.details["imports_self_s_by_package"][:5])
    res.notes.append(f"imports during --help (self time by package): {top}")
    return res
