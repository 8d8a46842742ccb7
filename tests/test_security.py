"""Security: loopback-only listeners, workloads that never meet a shell, names and paths that
cannot leave their folder, and sealed bundles whose edits `check` names."""

from __future__ import annotations

import ast
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, run_cli, write_profile
from labconsole.bundle.seal import seal, verify
from labconsole.bundle.writer import BundleWriter, safe_name
from labconsole.emulators import lpm01a as lpm_emu
from labconsole.emulators import ptd as ptd_emu
from labconsole.emulators import wt310
from labconsole.events import EventBus
from labconsole.profile import ProfileError, parse_profile_text
from labconsole.recorder import Recorder
from labconsole.sources.simulated import SimulatedSource
from labconsole.emulators.sntp import SntpResponder
from mlperf_fakes import write_detail_log, write_samples

# --- listeners bind loopback unless the user asks ---------------------------------------------------------


def listening(port: int) -> list[str]:
    """Addresses something listens on at this TCP port (from /proc/net/tcp and tcp6)."""
    found = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            addr, hexport = parts[1].split(":")
            if parts[3] != "0A" or int(hexport, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(addr)
            if v6:
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.append(socket.inet_ntop(socket.AF_INET6, raw))
            else:
                found.append(socket.inet_ntop(socket.AF_INET, raw[::-1]))
    return found


def test_every_emulator_and_listener_binds_loopback_by_default():
    wt = wt310.start({})
    ptd = ptd_emu.start({})
    lpm = lpm_emu.start({})
    sntp = SntpResponder().start()
    try:
        assert listening(wt.server.port) == ["127.0.0.1"]
        assert listening(ptd.port) == ["127.0.0.1"]
        assert sntp.address[0] == "127.0.0.1"
        assert lpm.path.startswith("/dev/pts/")  # a pseudo-terminal: nothing on the network at all
    finally:
        for h in (wt, ptd, lpm, sntp):
            h.stop()


def _emulate(*args: str, warning: bool) -> tuple[subprocess.Popen, int, list[str], Callable[[], str]]:
    """Start `labconsole emulate ...`; return once it listens (and has warned, if it must), with
    a function that gives everything it printed after that, once it has ended.

    Lines are read on a thread, so a process that goes quiet fails the test at the deadline
    instead of blocking a read until the suite's timeout."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "labconsole", "emulate", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()

    def rest() -> str:
        reader.join(timeout=30)  # it reads to the pipe's end: the process has ended
        return "".join(lines.get_nowait() for _ in range(lines.qsize()))

    seen: list[str] = []
    port = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None and lines.empty():
                break
            continue
        seen.append(line)
        for marker in ("emulator listening on ", "Establishing the listener on port "):
            if marker in line:
                port = int(re.match(r"(?:[\d.]+:)?(\d+)", line.rsplit(marker, 1)[1]).group(1))
        if port is not None and (not warning or any(s.startswith("warning: ") for s in seen)):
            return proc, port, seen, rest
    proc.kill()
    proc.wait(timeout=30)
    raise AssertionError("no listening line (and warning) within 60 s:\n" + "".join(seen))


@pytest.mark.parametrize("name,port_flag", [("wt310", "--port"), ("ptd", "-p")])
def test_labconsole_emulate_binds_loopback_and_only_host_widens_it(name, port_flag):
    for host, expect in ((None, "127.0.0.1"), ("0.0.0.0", "0.0.0.0")):
        args = [name, port_flag, "0"] + (["--host", host] if host else [])
        proc, port, seen, rest = _emulate(*args, warning=bool(host))
        try:
            assert listening(port) == [expect], seen
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        out = rest()
        text = "".join(seen) + out
        assert ("warning: listening on 0.0.0.0: other machines can reach this emulator" in text) == bool(host)
        assert ("other machines can reach" in text) == bool(host)  # no warning of any kind on loopback


def test_a_profile_cannot_widen_an_emulator(tmp_path):
    body = """
    name: wide
    sources:
      - name: wall
        driver: yokogawa
        sample_interval_s: 0.1
        emulator:
          idle_w: 50
          host: 0.0.0.0
    """
    path = write_profile(tmp_path, body)
    with pytest.raises(ProfileError) as err:
        parse_profile_text(path.read_bytes(), str(path))
    assert f"{path}:8: sources[0].emulator.host: '0.0.0.0': an emulator a profile starts listens on this machine only" in str(err.value)
    out = run_cli("run", "--profile", str(path), timeout=60)
    assert out.returncode == 2 and f"{path}:8:" in out.stderr and "Traceback" not in out.stderr
    for ok in ("127.0.0.1", "::1", "localhost"):
        parse_profile_text(path.read_text().replace("0.0.0.0", ok).encode(), str(path))


# --- workloads never meet a shell -------------------------------------------------------------------------

HOSTILE_ARGS = [
    "; rm -rf victim", "$(touch pwned-subst)", "`touch pwned-backtick`", "a && touch pwned-and", "| touch pwned-pipe",
    "> pwned-redirect", "*", "~", "$HOME", "'single'", '"double"', "line\nbreak", "--flag=$(id)", "back\\slash",
    " spaced  out ", "ünïcode", "%s%n", "-c",
]


def test_a_command_workload_gets_its_arguments_verbatim_never_through_a_shell(tmp_path):
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("still here")
    (tmp_path / "argv_dump.py").write_text(
        "import json, os, sys\n"
        "json.dump({'argv': sys.argv[1:], 'env': os.environ.get('HOSTILE')}, open('argv.json', 'w'))\n"
    )
    workload = {
        "type": "command",
        "command": [sys.executable, "argv_dump.py", *HOSTILE_ARGS],
        "loadgen_logs": "logs",
        "cwd": str(tmp_path),
        "env": {"HOSTILE": "$(touch pwned-env); `id`"},
        "duration_s": 1,
    }
    profile = {
        "name": "shell-free",
        "recordings": str(tmp_path / "rec"),
        "sources": [{"name": "wall", "driver": "simulated", "sample_interval_s": 0.1}],
        "workload": workload,
        "procedure": {"idle_s": 0, "ranging": False},
    }
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps(profile))  # JSON is YAML: every string exactly as written
    out = run_cli("run", "--profile", str(path), "--quiet", cwd=tmp_path, timeout=120)
    # The harness wrote no LoadGen logs, so the run fails, saying so; what matters is the argv.
    assert out.returncode == 1 and "no LoadGen logs" in out.stdout + out.stderr, out.stdout + out.stderr
    got = json.loads((tmp_path / "argv.json").read_text())
    assert got == {"argv": HOSTILE_ARGS, "env": "$(touch pwned-env); `id`"}
    assert (tmp_path / "victim" / "keep.txt").read_text() == "still here"
    assert not [p for p in tmp_path.rglob("pwned*")] and not list(Path.cwd().glob("pwned*"))


def test_nothing_in_labconsole_can_reach_a_shell():
    """No shell=True, no os.system/os.popen, no command line as one string, anywhere."""
    offenders = []
    for path in (ROOT / "labconsole").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False) for k in node.keywords):
                offenders.append(f"{where}: shell= in {name}()")
            if name in ("os.system", "os.popen", "os.spawnlp", "os.execlp", "subprocess.getoutput", "subprocess.getstatusoutput"):
                offenders.append(f"{where}: {name}()")
            if name.split(".")[-1] in ("Popen", "run", "call", "check_call", "check_output") and name.startswith("subprocess") and node.args:
                if isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
                    offenders.append(f"{where}: {name}() with a command string")
    assert offenders == []


# --- names and paths stay inside their folder ---------------------------------------------------------------

hostile_names = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["..", "../..", "../../etc/passwd", "/etc/passwd", ".", "", "a/../../b", "..\\..\\win", "\x00", "-", "~root", "$(id)", "x" * 500]),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(profile_name=hostile_names, scenario=hostile_names, phase=hostile_names)
def test_bundle_and_phase_names_never_leave_their_folder(tmp_path, profile_name, scenario, phase):
    rec = tmp_path / "rec"
    w = BundleWriter.create(rec, profile_name, scenario)
    assert w.root.parent == rec and w.root.resolve().parent == rec.resolve()
    d = w.phase_dir(phase)
    assert d.parent == w.data and d.resolve().parent == w.data.resolve()
    for name in (w.root.name, d.name, safe_name(profile_name)):
        assert name and "/" not in name and "\\" not in name and "\x00" not in name and not name.startswith((".", "-")) and ".." not in name


def test_source_names_are_file_names_only(tmp_path):
    bad = ["../x", "a/b", ".hidden", "", "x" * 65, "a\x00b", "-dash", "..", "a\\b"]
    for name in bad:
        text = f"name: n\nsources:\n  - name: {json.dumps(name)}\n    driver: simulated\n"
        with pytest.raises(ProfileError, match=r"p.yaml:3: sources\[0\].name"):
            parse_profile_text(text.encode(), "p.yaml")
        with pytest.raises(ValueError, match="source name"):
            Recorder([(SimulatedSource(name), "stop")], EventBus(), between_folder=tmp_path / "between")
    assert not (tmp_path / "between").exists() and list(tmp_path.iterdir()) == []


T0 = 1_764_000_000_000_000_000
S = 1_000_000_000
HOSTILE = "../../../../../tmp/labconsole-pwned\x1b]0;owned\x07\x1b[2J"


def hostile_bundle(root: Path) -> Path:
    """A bundle whose run.json and events carry hostile strings where names usually go."""
    data = root / "data"
    data.mkdir(parents=True)
    run = {
        "id": HOSTILE, "exit_status": "completed", "reason": HOSTILE, "primary_source": "wall", "scenario": "Offline",
        "profile": {"name": HOSTILE, "path": HOSTILE}, "start": HOSTILE, "operator": HOSTILE,
        "sources": [{"name": "wall", "driver": "simulated", "scope": "wall"}, {"name": HOSTILE, "driver": HOSTILE}],
        "procedure": {"idle_s": HOSTILE},
    }
    (data / "run.json").write_text(json.dumps(run))
    (data / "environment.json").write_text(json.dumps({"sources": [{"name": "wall", "identity": {"model": HOSTILE, "address": HOSTILE}}]}))
    events = [
        {"kind": "phase_start", "message": HOSTILE, "phase": "testing", "data": {}, "wall_ns": T0},
        {"kind": "info", "message": HOSTILE, "phase": HOSTILE, "data": {"source": HOSTILE}, "wall_ns": T0 + S},
        {"kind": "phase_start", "message": "x", "phase": HOSTILE, "data": {}, "wall_ns": T0 + 2 * S},
        {"kind": "phase_end", "message": HOSTILE, "phase": "testing", "data": {}, "wall_ns": T0 + 6 * S},
    ]
    (data / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    write_detail_log(data / "testing" / "loadgen", "Offline", T0 + S, T0 + 5 * S, extra={"result_samples_per_second": 100.0})
    write_samples(data / "testing" / "samples-wall.csv", [T0 + i * S // 2 for i in range(13)], [100.0] * 13)
    return root


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def test_a_hostile_recording_writes_nothing_outside_its_folders(tmp_path):
    from labconsole.session.replay import ReplaySession

    bundle = hostile_bundle(tmp_path / "bundle")
    before = _files(tmp_path)
    assert run_cli("report", str(bundle), "--json", timeout=60).returncode == 0
    chk = run_cli("check", str(bundle), "--json", timeout=60)
    assert chk.returncode in (0, 1) and "Traceback" not in chk.stderr
    exp = run_cli("export", str(bundle), "--mlperf", str(tmp_path / "out"), timeout=60)
    assert exp.returncode == 0, exp.stderr
    session = ReplaySession(bundle, speed=1000)
    session.start()
    time.sleep(0.3)
    session.close()
    assert run_cli("recover", str(bundle), timeout=60).returncode == 0
    new = _files(tmp_path) - before
    outside = [p for p in new if not (p.is_relative_to(bundle) or p.is_relative_to(tmp_path / "out"))]
    assert outside == []
    assert not Path("/tmp/labconsole-pwned").exists() and not any(tmp_path.rglob("*pwned*"))
    exported = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert exported <= {"README-labconsole.txt", "power/client.json", "power/server.json", "power/client.log", "run_1/mlperf_log_detail.txt", "run_1/mlperf_log_summary.txt", "run_1/spl.txt"}


def test_export_and_reader_never_follow_links_out_of_a_bundle(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT\n")
    other = tmp_path / "elsewhere"
    other.mkdir()
    write_samples(other / "samples-x.csv", [T0 + i * S // 2 for i in range(13)], [1e6] * 13)
    bundle = hostile_bundle(tmp_path / "bundle")
    seal(bundle)
    assert verify(bundle).ok
    testing = bundle / "data" / "testing"
    os.symlink(secret, testing / "ptd-log.txt")  # export copies PTD transcripts
    (testing / "loadgen" / "mlperf_log_summary.txt").unlink()
    (testing / "loadgen" / "mlperf_log_summary.txt").symlink_to(secret)
    os.symlink(other / "samples-x.csv", testing / "samples-evil.csv")  # a million watts, from outside
    chk = run_cli("check", str(bundle), "--json", timeout=60)
    manifest = [c for c in json.loads(chk.stdout)["checks"] if c["name"] == "manifest"][0]
    assert chk.returncode == 1 and manifest["status"] == "fail"
    for rel in ("data/testing/ptd-log.txt", "data/testing/loadgen/mlperf_log_summary.txt", "data/testing/samples-evil.csv"):
        assert f"{rel}: a link, added after sealing" in manifest["message"]
    rep = json.loads(run_cli("report", str(bundle), "--json", timeout=60).stdout)
    assert rep["power"]["avg_watts"] == 100.0  # the linked samples were not read
    # a sealed bundle changed since is not exported at all (issue 21), the links named
    exp = run_cli("export", str(bundle), "--mlperf", str(tmp_path / "out"), timeout=60)
    assert exp.returncode == 1 and "changed after sealing" in exp.stderr and "a link, added after sealing" in exp.stderr
    assert not (tmp_path / "out").exists()
    # unsealed, it is exported, and still no link is followed
    (bundle / "manifest-sha256.txt").unlink()
    exp = run_cli("export", str(bundle), "--mlperf", str(tmp_path / "out"), timeout=60)
    assert exp.returncode == 0, exp.stderr
    for p in (tmp_path / "out").rglob("*"):
        assert not p.is_symlink() and (p.is_dir() or b"TOP-SECRET" not in p.read_bytes()), p
    assert "leads out of the bundle" in exp.stdout


# --- a sealed bundle that was edited fails `check`, naming the file ------------------------------------------


def test_check_names_every_edit_of_a_sealed_bundle(tmp_path):
    bundle = hostile_bundle(tmp_path / "bundle")
    seal(bundle)
    ok = run_cli("check", str(bundle), "--json", timeout=60)
    assert [c for c in json.loads(ok.stdout)["checks"] if c["name"] == "manifest"][0]["status"] == "pass"
    samples = bundle / "data" / "testing" / "samples-wall.csv"
    samples.write_bytes(samples.read_bytes().replace(b",100.0,", b",99.0,", 1))  # one reading changed
    (bundle / "data" / "environment.json").unlink()
    (bundle / "data" / "notes.txt").write_text("added")
    info = bundle / "bag-info.txt"
    info.write_text(info.read_text().replace("Labconsole-Exit-Status", "X-Exit-Status") if "Labconsole" in info.read_text() else info.read_text() + "X: y\n")
    out = run_cli("check", str(bundle), timeout=60)
    assert out.returncode == 1
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("[FAIL] manifest:")][0]
    for expected in (
        "data/testing/samples-wall.csv: changed after sealing (checksum differs)",
        "data/environment.json: missing (listed in the manifest)",
        "data/notes.txt: added after sealing (not in the manifest)",
        "bag-info.txt: changed after sealing (checksum differs)",
    ):
        assert expected in line, line
    assert out.stdout.rstrip().splitlines()[-1].startswith("FAILED: ")


def test_the_powershield_emulator_link_never_repoints_a_users_link(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    link = tmp_path / "my-link"
    link.symlink_to(target)
    with pytest.raises(OSError, match="not to a pseudo-terminal; not replacing it"):
        lpm_emu.start({"link": str(link)})
    assert os.readlink(link) == str(target)
    emu = lpm_emu.start({"link": str(tmp_path / "tty")})  # a new link, or one to an old pty, is fine
    try:
        assert os.readlink(tmp_path / "tty") == emu.path
    finally:
        emu.stop()
    assert not (tmp_path / "tty").exists()


def test_rerun_of_a_bundle_that_runs_its_own_code_asks_first(sim_profile, tmp_path):
    """A bundle may come from someone else: `run --from` shows the code it would run and,
    without a terminal to ask on, refuses unless --yes is given."""
    from conftest import run_cli

    (tmp_path / "tiny_sut.py").write_text("def run(indices):\n    pass\n")
    profile = sim_profile(duration=1, sut="python:tiny_sut:run", sut_options="{}", workload_extra="target_qps: 200")
    first = run_cli("run", "--profile", str(profile), "--quiet", cwd=tmp_path, timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    bundle = first.stdout.strip().splitlines()[-1]
    again = run_cli("run", "--from", bundle, "--quiet", cwd=tmp_path, timeout=240)
    assert again.returncode == 2
    assert "this bundle runs code on this machine: the Python SUT python:tiny_sut:run" in again.stdout
    assert "refused: pass --yes" in again.stderr
    assert len([p for p in (tmp_path / "recordings").iterdir() if p.is_dir()]) == 1  # nothing recorded


def test_untrusted_text_is_escaped_for_the_terminal():
    from labconsole.cli import _printable

    assert _printable("WT310E\x1b]0;owned\x07 s/n 1\n") == "WT310E\\x1b]0;owned\\x07 s/n 1\n"
