"""Faults provoked on purpose: the console survives, stops within bounded time, loses nothing
that was read, and seals the bundle saying why."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from labconsole.bundle.reader import open_run
from labconsole.bundle.seal import verify


def start_run(profile: Path, *extra: str, cwd: Path | None = None, preexec=None) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "labconsole", "run", "--profile", str(profile), *extra],
        cwd=str(cwd or ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=preexec,
    )


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 120) -> list[str]:
    """Read the run's stdout until a line contains `needle` (the run keeps going)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return seen
    proc.kill()
    raise AssertionError(f"never saw {needle!r}; output so far:\n{''.join(seen)}\nstderr:\n{proc.stderr.read()}")


def bundle_of(recordings: Path) -> Path:
    found = [p for p in recordings.iterdir() if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


def workers_alive(bundle: Path) -> list[int]:
    """PIDs of LoadGen workers of this bundle still running (there must be none)."""
    alive = []
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "labconsole.workload.worker" in cmd and str(bundle) in cmd:
            alive.append(int(pid_dir.name))
    return alive


def wait_gone(bundle: Path, timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = workers_alive(bundle)
        if not left:
            return []
        time.sleep(0.2)
    return workers_alive(bundle)


def test_hanging_sut_is_stopped_and_the_bundle_sealed_failed(sim_profile, tmp_path):
    (tmp_path / "hang_sut.py").write_text("import time\ndef run(indices):\n    time.sleep(3600)\n")
    profile = sim_profile(duration=2, sut="python:hang_sut:run", sut_options="{}", workload_extra="target_qps: 50\nstall_s: 3")
    t0 = time.monotonic()
    out = run_cli("run", "--profile", str(profile), "--quiet", cwd=tmp_path, timeout=120)
    elapsed = time.monotonic() - t0
    assert out.returncode == 1, out.stdout + out.stderr
    assert elapsed < 60  # bounded: stall 3 s + stop + seal
    bundle = Path(out.stdout.strip().splitlines()[-1])
    run = json.loads((bundle / "data" / "run.json").read_text())
    assert run["exit_status"] == "failed"
    assert "no progress for 3 s" in run["reason"]
    assert verify(bundle).ok
    assert wait_gone(bundle) == []


def test_sigterm_aborts_cleanly_and_keeps_what_was_recorded(sim_profile, tmp_path):
    profile = sim_profile(duration=30)
    proc = start_run(profile)
    wait_for_line(proc, ">> [ranging]")
    time.sleep(2.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    bundle = Path(out.strip().splitlines()[-1])
    run = json.loads((bundle / "data" / "run.json").read_text())
    assert run["exit_status"] == "aborted"
    assert "SIGTERM" in run["reason"]
    assert verify(bundle).ok
    rec = open_run(bundle)
    assert len(rec.phases["ranging"].samples) > 20  # the samples up to the abort are kept
    # every sample read was written: the recorder's own count equals what is on disk
    on_disk = sum(len(p.samples) for p in rec.phases.values() if p.samples is not None)
    assert run["acquisition"]["samples_written"] == on_disk
    assert run["acquisition"]["sources"]["wall"]["read"] == on_disk
    assert wait_gone(bundle) == []
    chk = json.loads(run_cli("check", str(bundle), "--json").stdout)
    status = [c for c in chk["checks"] if c["name"] == "run status"][0]
    assert status["status"] == "fail" and "aborted" in status["message"]


def test_sigkill_leaves_a_readable_unsealed_bundle_that_recover_seals(sim_profile, tmp_path):
    profile = sim_profile(duration=30, interval=0.02)
    proc = start_run(profile)
    wait_for_line(proc, ">> [ranging]")
    time.sleep(3.0)
    kill_ns = time.time_ns()
    proc.kill()
    proc.communicate(timeout=30)
    bundle = bundle_of(tmp_path / "recordings")
    assert wait_gone(bundle) == []  # the LoadGen worker died with the console
    chk = run_cli("check", str(bundle), "--json")
    assert chk.returncode == 1
    manifest = [c for c in json.loads(chk.stdout)["checks"] if c["name"] == "manifest"][0]
    assert "not sealed" in manifest["message"]
    rec = open_run(bundle)
    last = int(rec.phases["ranging"].samples["wall_ns"].max())
    lost_s = (kill_ns - last) / 1e9
    assert lost_s < 1.6, f"{lost_s:.2f} s of samples lost (the recorder flushes about once a second)"
    rcv = run_cli("recover", str(bundle))
    assert rcv.returncode == 0, rcv.stderr
    assert verify(bundle).ok
    run = json.loads((bundle / "data" / "run.json").read_text())
    assert run["exit_status"] == "recovered"
    rep = run_cli("report", str(bundle), "--json")
    assert rep.returncode == 0, rep.stderr
    ranging = json.loads(rep.stdout)["phases"]["ranging"]
    assert ranging["samples"] == len(rec.phases["ranging"].samples)
    assert ranging["power_window"] is False  # LoadGen never finished: a phase average only
    assert ranging["avg_watts"] > 0


def test_full_disk_stops_the_run_with_a_clear_error(sim_profile, tmp_path):
    # RLIMIT_FSIZE makes every file stop growing at 64 KiB: the fast sample stream hits it
    # first, exactly as a full disk would refuse the write (EFBIG instead of ENOSPC).
    limit = 64 * 1024

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    profile = sim_profile(duration=20, interval=0.002)
    proc = start_run(profile, preexec=small_files)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err
    bundle = bundle_of(tmp_path / "recordings")
    run = json.loads((bundle / "data" / "run.json").read_text())
    assert run["exit_status"] == "failed"
    assert "cannot write samples" in run["reason"]
    rec = open_run(bundle)
    # what was written before the disk filled is intact and parses
    for phase in rec.phases.values():
        assert not phase.sample_errors, phase.sample_errors
    assert wait_gone(bundle) == []
    # every sample read is on disk or counted lost, never both: what the disk refused is gone
    # from the file too (no half-written rows that a later write would repeat)
    from labconsole.samples.streams import read_sample_stream

    acq = run["acquisition"]
    on_disk = sum(len(read_sample_stream(p).frame) for p in (bundle / "data").rglob("samples-*.csv"))
    assert acq["samples_written"] == on_disk
    assert acq["samples_lost"] > 0 and acq["samples_read"] == acq["samples_written"] + acq["samples_lost"], acq
    assert not [str(p) for p in (bundle / "data").rglob("samples-*.csv") if not p.read_bytes().endswith(b"\n")]
    chk = json.loads(run_cli("check", str(bundle), "--json").stdout)
    acq_check = [c for c in chk["checks"] if c["name"] == "acquisition"][0]
    assert acq_check["status"] == "fail" and "read but not written" in acq_check["message"]


def test_a_second_console_on_the_same_recordings_folder_is_refused(sim_profile, tmp_path):
    profile = sim_profile(duration=30)
    first = start_run(profile)
    try:
        wait_for_line(first, ">> [")
        second = run_cli("run", "--profile", str(profile), "--quiet", timeout=60)
        assert second.returncode == 1
        assert "refused: the recordings folder" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert len([p for p in (tmp_path / "recordings").iterdir() if p.is_dir()]) == 1


def test_unwritable_recordings_folder_is_a_clear_refusal(sim_profile, tmp_path):
    profile = sim_profile(duration=2)
    out = run_cli("run", "--profile", str(profile), "--out", "/proc/labconsole-cannot-write-here", timeout=60)
    assert out.returncode == 2  # a folder the person named that cannot be written: bad input (README, exit statuses)
    assert out.stderr.startswith("refused: cannot record into /proc/labconsole-cannot-write-here")
    assert "Traceback" not in out.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGINT"), reason="needs POSIX signals")
def test_sigint_twice_still_seals(sim_profile, tmp_path):
    profile = sim_profile(duration=30)
    proc = start_run(profile)
    wait_for_line(proc, ">> [ranging]")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "still stopping" in err
    bundle = Path(out.strip().splitlines()[-1])
    assert verify(bundle).ok
