"""How `check`, `report` and `run` print: colour and a verdict line with counts on a terminal,
failures first, warnings never hidden by PASSED, plain lines in a pipe, text from files escaped."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from types import SimpleNamespace

from conftest import FIXTURES, ROOT, run_cli

from labconsole import cli_render
from labconsole import events as ev
from labconsole.cli_render import RunDisplay, RunEstimate, fmt_eta, print_checks, verdict_line
from labconsole.mlperf.checks.registry import CheckResult

# a complete published result that passes with warnings (the trimmed v3.1/v4.0 copies lack files, so fail)
MLPERF = FIXTURES / "mlperf-results" / "rounds" / "v2.1__Dell__XR12_A2x1_TRT_MaxQ__resnet50__MultiStream"


def terminal(width: int = 200) -> tuple[io.StringIO, cli_render.Console]:
    buf = io.StringIO()
    return buf, cli_render.Console(file=buf, force_terminal=True, color_system="standard", width=width, highlight=False, soft_wrap=True)


def results() -> list[CheckResult]:
    return [
        CheckResult("manifest", "pass", "sealed"),
        CheckResult("clock offset", "warn", "no NTP server"),
        CheckResult("debug", "skip", "not applicable"),
        CheckResult("ranging vs testing", "fail", "testing -21.7 % against ranging [bold]x[/bold] \x1b[31m"),
        CheckResult("calibration", "warn", "no certificate"),
    ]


def test_verdict_line_counts_and_never_hides_warnings():
    assert verdict_line(["fail", "warn", "warn", "pass", "skip"])[0] == "FAILED: 1 fail, 2 warn, 1 pass, 1 skip"
    assert verdict_line(["warn", "pass", "pass", "warn", "warn"])[0] == "PASSED with 3 warnings: 0 fail, 3 warn, 2 pass"
    assert verdict_line(["pass", "warn"])[0] == "PASSED with 1 warning: 0 fail, 1 warn, 1 pass"
    assert verdict_line(["pass", "skip"])[0] == "PASSED: 0 fail, 1 pass, 1 skip"


def test_checks_on_a_terminal_are_coloured_failures_first_and_escaped():
    buf, con = terminal()
    print_checks(results(), con)
    out = buf.getvalue()
    assert "\x1b[" in out  # coloured
    lines = [ln for ln in out.splitlines() if ln.strip()]
    plain = [cli_render.Text.from_ansi(ln).plain for ln in lines]
    assert [p.split("]")[0] for p in plain[:5]] == ["[FAIL", "[WARN", "[WARN", "[PASS", "[SKIP"]
    # markup in a message is shown as written, an escape sequence from a file is not obeyed
    assert "[bold]x[/bold] \\x1b[31m" in plain[0]
    assert "\x1b[31m" not in lines[0].split("ranging", 1)[1]
    assert plain[-1] == "FAILED: 1 fail, 2 warn, 1 pass, 1 skip"


def test_checks_in_a_pipe_are_plain_lines(capsys):
    print_checks(results(), cli_render.console(io.StringIO()))  # a StringIO is no terminal
    buf = io.StringIO()
    print_checks(results(), cli_render.console(buf))
    out = buf.getvalue()
    assert "\x1b" not in out.replace("\\x1b", "")
    assert out.splitlines()[0].startswith("[FAIL] ranging vs testing: testing -21.7 %")
    assert out.rstrip().endswith("FAILED: 1 fail, 2 warn, 1 pass, 1 skip")


def test_check_command_names_the_warnings_of_a_pass():
    out = run_cli("check", str(MLPERF))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1].startswith("PASSED with ") and " warn" in lines[-1], lines[-1]
    assert lines[0].startswith("rules: ")  # which round's rules were applied, first
    statuses = [ln[1:5] for ln in lines[1:-1]]
    assert statuses == sorted(statuses, key=["FAIL", "WARN", "PASS", "SKIP"].index)  # worst first
    js = run_cli("check", str(MLPERF), "--json")  # --json unchanged: one object, no summary line
    assert js.stdout.lstrip().startswith("{") and js.stdout.rstrip().endswith("}")


def test_report_on_a_terminal_colours_validity():
    rep = {"scenario": "Offline", "result_validity": "INVALID", "metric": {"name": "avg_power", "value": 100.0, "unit": "W"}, "ranging_delta_pct": -7.0}
    buf, con = terminal()
    cli_render.print_report(rep, con)
    out = buf.getvalue()
    assert "\x1b[1;31mINVALID" in out and "\x1b[1;31m-7.00 %" in out


def fake_proc(phase: str, elapsed: float, duration: float = 10.0):
    prof = SimpleNamespace(procedure=SimpleNamespace(idle_s=3.0, ranging=True), workload=SimpleNamespace(target_qps="auto", expected_latency_ms="auto"))
    return SimpleNamespace(profile=prof, duration_s=duration, phase=phase, phase_started_mono=time.monotonic() - elapsed, recorder=None, progress={})


def test_run_estimate_covers_every_phase_and_never_lies_about_an_overrun():
    est = RunEstimate(fake_proc("calibration", 0))
    assert [n for n, _ in est.phases] == ["calibration", "probe", "ranging", "testing"]
    assert est.total_s == 7 + 3 + 11 + 11
    done, left = est.where("ranging", 5.0)
    assert done == (10 + 5) / 32 and left == 6 + 11
    done, left = est.where("testing", 30.0)  # LoadGen past its minimum duration
    assert 0.9 < done < 1.0 and left is None and fmt_eta(left) == "finishing"
    assert est.where("analysis", 0) == (1.0, 0.0)
    assert fmt_eta(75.4) == "ETA 1:15"


def test_run_display_on_a_terminal_shows_phase_percentage_and_eta():
    buf, con = terminal(120)
    proc = fake_proc("ranging", 5.0)
    with RunDisplay(proc, out=con) as shown:
        shown.event(SimpleNamespace(kind=ev.WARNING, wall_ns=time.time_ns(), phase="ranging", message="hot [red]x[/red]"))
        shown.tick()
        shown.progress.refresh()
    text = cli_render.Text.from_ansi(buf.getvalue()).plain
    assert "ranging" in text and "47 %" in text and "ETA 0:17" in text
    assert "WARN  [ranging] hot [red]x[/red]" in text


def test_run_display_in_a_pipe_prints_plain_lines():
    buf = io.StringIO()
    proc = fake_proc("ranging", 5.0)
    with RunDisplay(proc, out=cli_render.console(buf)) as shown:
        assert shown.progress is None
        shown.event(SimpleNamespace(kind=ev.RESULT, wall_ns=time.time_ns(), phase="probe", message="SUT probe: target_qps 10"))
        shown.event(SimpleNamespace(kind=ev.PROGRESS, wall_ns=time.time_ns(), phase="ranging", message="5 completed"))
    assert buf.getvalue().endswith("RESULT [probe] SUT probe: target_qps 10\n") and "\x1b" not in buf.getvalue()


def test_run_on_a_tty_draws_a_progress_bar(sim_profile, tmp_path):
    """The real command on a pseudo-terminal: a bar with the phase, a percentage and an ETA."""
    profile = sim_profile(duration=1, idle=0.3)
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120", LINES="30", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "labconsole", "run", "--profile", str(profile)], cwd=str(tmp_path), stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    raw = b"".join(chunks).decode("utf-8", "replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    assert rc == 0, text[-2000:]
    assert "\x1b[" in raw  # coloured on a terminal
    assert "testing" in text and " %" in text and ("ETA " in text or "finishing" in text), text[-2000:]
    assert "━" in raw  # the bar itself
    assert "checks (of this run): " in text
