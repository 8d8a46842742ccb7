"""The official workflow driven by the console (issue 20, "Done when"), on one machine.

`labconsole run --profile profiles/emu-official.yaml` (the real command line, unmodified
power-dev from ../shared/vendor found through LABCONSOLE_POWERDEV) starts an SNTP responder on
127.0.0.1:123, power-dev's server with `labconsole emulate ptd` as its PTDaemon, the director's
live view, and power-dev's client with a short LoadGen workload; no MLPP_DEBUG. One session
(about 80 s) per module, shared by the tests below through a module-scoped fixture.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from labconsole.bundle.reader import read_spl
from labconsole.events import read_events
from labconsole.samples.streams import read_sample_stream
from labconsole.workload.loadgen_log import parse_detail_log
from official_bench import need_powerdev_and_ntp_port
from powerdev_real import OFFICIAL_CHECK_NAMES, POWER_DEV, official_check

# power-dev asks 127.0.0.1:123 for the time: tools/test runs these (sntp123) one after another, not in parallel
pytestmark = pytest.mark.sntp123

OFFICIAL_CHECKS = OFFICIAL_CHECK_NAMES


def _env() -> dict:
    return {"LABCONSOLE_POWERDEV": str(POWER_DEV)}


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> dict:
    need_powerdev_and_ntp_port()
    out = tmp_path_factory.mktemp("official")
    full = dict(os.environ, **_env())
    full.pop("MLPP_DEBUG", None)  # the console must not need it; the checker fails a debug session
    proc = run_cli("run", "--profile", str(ROOT / "profiles" / "emu-official.yaml"), "--out", str(out), timeout=400, env=full)
    bundle = Path(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    assert proc.returncode == 0 and bundle is not None and bundle.is_dir(), f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-3000:]}"
    run = json.loads((bundle / "data" / "run.json").read_text())
    folder = bundle / "data" / run["official"]["folder"]
    return {"bundle": bundle, "folder": folder, "run": run, "stdout": proc.stdout, "out": out}


def test_the_bundle_holds_the_official_session_folder_byte_for_byte(official):
    folder = official["folder"]
    for sub in ("power", "ranging", "run_1"):
        assert (folder / sub).is_dir(), f"{sub}/ missing from {folder}"
    # power-dev's own SHA-1 of each result file, recorded by its client and server when they
    # wrote them: the copy in the bundle is the same bytes.
    recorded: dict[str, tuple[str, str]] = {}
    for side in ("client.json", "server.json"):
        for rel, sha1 in json.loads((folder / "power" / side).read_text())["results"].items():
            recorded[rel] = (side, sha1)
    assert {"power/client.log", "power/ptd_logs.txt", "ranging/spl.txt", "run_1/spl.txt", "run_1/mlperf_log_detail.txt"} <= set(recorded)
    for rel, (side, sha1) in recorded.items():
        if not (folder / rel).exists():
            continue  # the server hashes per-analyzer files (ptd_logs_analyzer_1.txt) the client never downloads
        assert hashlib.sha1((folder / rel).read_bytes()).hexdigest() == sha1, f"{rel} differs from what power-dev's {side} recorded"
    assert official["run"]["official"]["session"] == folder.name
    assert official["run"]["official"]["dry_run"] is False
    assert official["run"]["exit_status"] == "completed"
    # the run was not debug: power-dev's server says so in its own record
    assert json.loads((folder / "power" / "server.json").read_text()).get("debug") in (False, None)


def test_official_checker_passes_the_folder_in_the_bundle_and_labconsole_check_agrees(official):
    rc, verdicts, text = official_check(official["folder"])
    assert rc == 0, text[-3000:]
    assert set(OFFICIAL_CHECKS) <= set(verdicts) and all(verdicts.values()), verdicts
    proc = run_cli("check", str(official["bundle"]), "--json", env=_env())
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got["kind"] == "official-bundle" and got["passed"] and got["labconsole_passed"]
    assert got["official"]["ran"] and got["official"]["passed"] and got["official"]["checks"] == verdicts
    ours = {c["name"]: c["status"] for c in got["checks"]}
    for name in OFFICIAL_CHECKS:  # the same verdict, check by check
        assert ours[name] == "pass", (name, ours.get(name))
    assert ours["manifest"] == "pass"
    # the text form shows both verdicts side by side
    text = run_cli("check", str(official["bundle"]), env=_env()).stdout
    assert "official compliance/check.py" in text and "official: PASSED" in text and "labconsole: PASSED" in text


def test_report_reads_the_official_files(official):
    folder = official["folder"]
    rep = json.loads(run_cli("report", str(official["bundle"]), "--json").stdout)
    direct = json.loads(run_cli("report", str(folder), "--json", "--scenario", "Offline").stdout)
    assert rep["metric"] == direct["metric"] and rep["power"] == direct["power"]
    # the window and average straight from run_1/spl.txt and LoadGen's detail log
    detail = parse_detail_log(folder / "run_1" / "mlperf_log_detail.txt")
    spl = read_spl(folder / "run_1" / "spl.txt")
    inside = spl[(spl.wall_ns > detail.power_begin_ns) & (spl.wall_ns < detail.power_end_ns) & (spl.watts > 0)]
    assert rep["power"]["samples_in_window"] == len(inside) > 0
    assert rep["power"]["avg_watts"] == pytest.approx(float(inside.watts.mean()), rel=1e-12)
    assert rep["scenario"] == "Offline" and not rep.get("scenario_notes")


def test_live_power_came_from_the_directors_ptd_log(official):
    """The samples the console plotted live are the PTD log lines the director tailed: every
    testing sample in run_1/spl.txt (PTD's record of the same log) was seen live, same time,
    same watts."""
    folder, bundle = official["folder"], official["bundle"]
    live = read_sample_stream(bundle / "data" / "testing" / "samples-wall.csv").frame
    spl = read_spl(folder / "run_1" / "spl.txt")
    assert len(spl) > 5
    seen = dict(zip(live.wall_ns.tolist(), live.watts.tolist()))
    matched = [(t, w) for t, w in zip(spl.wall_ns.tolist(), spl.watts.tolist()) if t in seen]
    assert len(matched) >= len(spl) - 1, f"{len(matched)} of {len(spl)} testing samples seen live"
    assert all(seen[t] == pytest.approx(w, abs=1e-6) for t, w in matched)


def test_the_console_followed_the_official_phases(official):
    events = read_events(official["bundle"] / "data" / "events.jsonl")
    msgs = [e.message for e in events]
    phases = [e.phase for e in events]

    def first(pred) -> int:
        return next(i for i, m in enumerate(msgs) if pred(m))

    order = [
        first(lambda m: m.startswith("director listening; PTDaemon says: YokogawaWT310E")),
        first(lambda m: m.startswith("preflight: SUT clock vs NTP")),
        first(lambda m: m.startswith("preflight: meter through PTD")),
        first(lambda m: "Session id is" in m),
        first(lambda m: m.startswith("ranging: Offline")),
        first(lambda m: m.startswith("testing: Offline")),
        first(lambda m: m.startswith("power-dev client: Fetching file")),
        first(lambda m: m == "power-dev client: Successful exit"),
    ]
    assert order == sorted(order), list(zip(order, msgs))
    assert any(e.kind == "progress" and e.phase == "ranging" for e in events)
    assert any(e.kind == "progress" and e.phase == "testing" for e in events)
    assert "testing" in phases and "ranging" in phases
    # preflight marked the 10 s rehearsal as not for submission
    pre = json.loads((official["bundle"] / "data" / "preflight.json").read_text())["items"]
    assert any(i["name"] == "LoadGen settings" and i["status"] == "warn" and "NOT valid for submission" in i["message"] for i in pre)
    assert official["run"]["official"]["not_for_submission"] is True
    # no gap warnings while power-dev's server was between measurements (PTD logs nothing then)
    assert not [m for m in msgs if "no samples for" in m]


def test_a_changed_byte_in_the_kept_folder_fails_both_verdicts(official, tmp_path):
    copy = tmp_path / official["bundle"].name
    shutil.copytree(official["bundle"], copy)
    spl = copy / "data" / official["run"]["official"]["folder"] / "run_1" / "spl.txt"
    lines = spl.read_text().splitlines(keepends=True)
    parts = lines[len(lines) // 2].split(",")
    parts[3] = f"{float(parts[3]) + 0.5:.6f}"
    lines[len(lines) // 2] = ",".join(parts)
    spl.write_text("".join(lines))
    proc = run_cli("check", str(copy), "--json", env=_env())
    assert proc.returncode == 1
    got = json.loads(proc.stdout)
    ours = {c["name"]: c["status"] for c in got["checks"]}
    assert ours["manifest"] == "fail" and ours["Check results checksum"] == "fail"
    assert got["official"]["passed"] is False and got["official"]["checks"]["Check results checksum"] is False
