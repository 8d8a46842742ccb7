"""Things that are not regular files, and paths the file system refuses.

A FIFO blocks a reader until a writer comes (for ever here), `/dev/zero` never ends, a link in
a bundle can lead anywhere: every command must answer at once with one line naming the path and
exit 2. Each command runs in a fresh interpreter under a timeout, so a hang fails the test
instead of blocking the suite; the same goes for a path component longer than NAME_MAX, a file
where a folder is needed, and the bad input of every subcommand (the README's exit statuses).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES, run_cli
from labconsole import safefile
from labconsole.bundle.reader import RunOpenError, open_run
from real_bundle import record_real_bundle

DELL = FIXTURES / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline"
LONG = "n" * 300  # longer than NAME_MAX (255) on every Linux file system


@pytest.fixture(scope="module")
def real_bundle(tmp_path_factory) -> Path:
    return record_real_bundle(tmp_path_factory.mktemp("realbundle"), run_cli)


def refused(res, *names: str) -> None:
    """Exit 2, one line on stderr naming each of `names`, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stdout[-500:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    for n in names:
        assert n in lines[0], (n, lines[0])


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


# --- profiles that are not files ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "tui"])
def test_a_fifo_or_a_device_as_a_profile_is_refused_at_once(tmp_path, command):
    pipe = fifo(tmp_path / "profile.yaml")
    refused(run_cli(command, "--profile", str(pipe), timeout=60), str(pipe), "FIFO")
    refused(run_cli(command, "--profile", "/dev/zero", timeout=60), "/dev/zero", "device")
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    refused(run_cli(command, "--profile", str(link), timeout=60), str(link), "device")


# --- FIFOs, devices and links inside a bundle or a result folder -------------------------------------


@pytest.mark.parametrize("rel,make", [
    ("data/events.jsonl", "fifo"),
    ("data/run.json", "fifo"),
    ("data/run.json", "devzero"),
    ("data/events.jsonl", "devzero"),
    ("data/testing/samples-wall.csv", "fifo"),
    ("data/testing/loadgen/mlperf_log_detail.txt", "fifo"),
])
def test_a_fifo_or_a_device_inside_a_bundle_is_refused_by_every_reader(real_bundle, tmp_path, rel, make):
    case = tmp_path / "b"
    shutil.copytree(real_bundle, case)
    target = case / rel
    target.unlink()
    if make == "fifo":
        fifo(target)
    else:
        target.symlink_to("/dev/zero")
    for argv in (("report", str(case)), ("check", str(case)), ("compare", str(real_bundle), str(case)), ("export", str(case), "--mlperf", str(tmp_path / "out")), ("replay", str(case))):
        refused(run_cli(*argv, timeout=60), str(target))
    res = run_cli("recover", str(case), timeout=60)  # sealed already: refused before reading anything
    assert res.returncode == 2 and "Traceback" not in res.stderr


def test_a_link_out_of_a_bundle_is_never_read(real_bundle, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text('{"kind": "info", "message": "TOP-SECRET", "phase": null, "data": {}, "wall_ns": 1}\n')
    case = tmp_path / "b"
    shutil.copytree(real_bundle, case)
    (case / "data" / "events.jsonl").unlink()
    (case / "data" / "events.jsonl").symlink_to(secret)
    refused(run_cli("check", str(case), timeout=60), "events.jsonl", "leading out")
    (case / "data" / "events.jsonl").unlink()
    (case / "data" / "run.json").unlink()
    (case / "data" / "run.json").symlink_to(secret)
    res = run_cli("report", str(case), "--json", timeout=60)
    refused(res, "run.json", "leading out")
    assert "TOP-SECRET" not in res.stdout + res.stderr


def test_a_fifo_as_an_mlperf_spl_txt_is_refused(tmp_path):
    root = tmp_path / "dell"
    shutil.copytree(DELL, root)
    spl = root / "performance" / "run_1" / "spl.txt"
    spl.unlink()
    fifo(spl)
    for argv in (("report", str(root)), ("check", str(root)), ("compare", str(DELL), str(root)), ("replay", str(root))):
        refused(run_cli(*argv, timeout=60), str(spl), "FIFO")


def test_every_file_read_is_capped_by_kind(real_bundle, tmp_path, monkeypatch):
    monkeypatch.setitem(safefile.LIMITS, "json", 100)  # a real run.json is a few kB
    with pytest.raises(RunOpenError, match=r"run\.json: larger than .* MiB, the most read from a json file"):
        open_run(real_bundle, load_samples=False)
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * 5000)
    with pytest.raises(safefile.FileRefused, match="larger than"):
        safefile.read_bytes(big, "text", limit=4096)
    assert safefile.read_bytes(big, "text", limit=5000) == b"x" * 5000


def test_safefile_never_blocks_on_a_fifo_without_a_writer(tmp_path):
    pipe = fifo(tmp_path / "p")
    with pytest.raises(safefile.FileRefused, match="FIFO"):
        safefile.read_bytes(pipe)
    with pytest.raises(safefile.FileRefused, match="character device"):
        safefile.read_bytes("/dev/zero")
    with pytest.raises(safefile.FileRefused, match="leads out of"):
        safefile.read_bytes("/etc/hostname", root=tmp_path)


# --- paths the file system refuses --------------------------------------------------------------------


def test_paths_the_file_system_refuses_get_one_line_and_exit_2(real_bundle, tmp_path):
    long = tmp_path / LONG
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [
        ("report", str(long)),
        ("check", str(long / "x")),
        ("compare", str(real_bundle), str(long)),
        ("export", str(real_bundle), "--mlperf", str(long)),
        ("export", str(real_bundle), "--mlperf", str(a_file / "out")),
        ("replay", str(long)),
        ("recover", str(long)),
        ("run", "--profile", str(long / "p.yaml")),
        ("run", "--from", str(long)),
        ("tui", "--profile", str(long)),
        ("discover", "--profile", str(long)),
        ("init", str(a_file / "p.yaml"), "--name", "x"),
        ("init", str(long / "p.yaml"), "--name", "x"),
    ]
    for argv in cases:
        res = run_cli(*argv, timeout=60)
        assert res.returncode == 2, (argv, res.stderr[-1500:])
        assert "Traceback" not in res.stderr, (argv, res.stderr)
        last = res.stderr.strip().splitlines()[-1]
        assert ("too long" in last or "a file" in last or "exists" in last or "not a folder" in last or "no such" in last), (argv, last)
    assert not a_file.is_dir() and a_file.read_text() == "x"


def test_a_run_into_a_folder_under_a_file_is_refused_with_exit_2(sim_profile, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    res = run_cli("run", "--profile", str(sim_profile()), "--out", str(a_file / "rec"), "--quiet", timeout=120)
    refused(res, str(a_file / "rec"))


# --- the README's exit statuses, for every subcommand -------------------------------------------------


def test_every_subcommand_exits_2_on_bad_input(tmp_path):
    missing = str(tmp_path / "missing")
    not_yaml = tmp_path / "p.yaml"
    not_yaml.write_text("name: [\n")
    cases = {
        "tui": ("tui", "--profile", str(not_yaml)),
        "run": ("run", "--profile", str(not_yaml)),
        "compare": ("compare", missing, missing),
        "init": ("init", "--name", "bad name!", str(tmp_path / "x.yaml")),
        "report": ("report", missing),
        "check": ("check", missing),
        "export": ("export", missing, "--mlperf", str(tmp_path / "o")),
        "recover": ("recover", missing),
        "discover": ("discover", "--profile", str(not_yaml)),
        "replay": ("replay", missing),
        "emulate": ("emulate", "nosuch"),
        "emulate wt310": ("emulate", "wt310", "--port", "99999"),
        "emulate ptd": ("emulate", "ptd", "-p", "99999"),
        "emulate lpm01a": ("emulate", "lpm01a", "--port", str(tmp_path / "a" / LONG)),
    }
    for name, argv in cases.items():
        res = run_cli(*argv, timeout=60)
        assert res.returncode == 2, (name, res.returncode, res.stderr[-1000:])
        assert "Traceback" not in res.stderr and "errors.pydantic.dev" not in res.stderr, (name, res.stderr)


def test_a_fifo_as_the_remembered_profile_does_not_hang_the_console_start():
    import threading

    from labconsole.tui.recent import FILE_NAME, last_profile, state_dir

    state_dir().mkdir(parents=True, exist_ok=True)
    fifo(state_dir() / FILE_NAME)
    got: list = []
    t = threading.Thread(target=lambda: got.append(last_profile()), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "last_profile() blocked on a FIFO"
    assert got == [None]


def test_a_phase_folder_linked_out_of_the_bundle_is_not_read(real_bundle, tmp_path):
    case = tmp_path / "b"
    shutil.copytree(real_bundle, case)
    outside = tmp_path / "outside"
    (case / "data" / "testing").rename(outside)
    (case / "data" / "testing").symlink_to(outside)
    res = run_cli("report", str(case), "--json", timeout=60)
    assert res.returncode == 0, res.stderr
    import json

    rep = json.loads(res.stdout)
    assert rep["metric"] is None and not (rep.get("power") or {}).get("samples_in_window")
    assert any("leading out of" in u or "a link" in u for u in rep["unreadable"])
    chk = run_cli("check", str(case), timeout=60)
    assert chk.returncode == 1 and "data/testing: a link, added after sealing" in chk.stdout
