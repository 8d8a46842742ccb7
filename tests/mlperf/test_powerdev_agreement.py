"""`labconsole check` against the official tools themselves (issue 13, "Done when").

The unmodified power-dev client and server (../shared/vendor/power-dev) run one full session
against `labconsole emulate ptd` (tests/helpers/powerdev_real.py; about a minute, so once per
module). Then power-dev's compliance/check.py and `labconsole check` judge that session and
damaged copies of it, each damage with and without the SHA-1s in client.json/server.json
rewritten. For every check named after an official one the verdicts agree, or labconsole's
message says how the official tool differs; overall, labconsole never passes what the official
tool fails, and where it fails what the official tool passes, a failing message says why.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli
from labconsole.bundle.reader import open_run
from labconsole.instruments.ptd import format_power_time, parse_power_time
from labconsole.mlperf import checks
from labconsole.mlperf.checks.registry import OFFICIAL
from powerdev_real import OFFICIAL_CHECK_NAMES, POWER_DEV, official_check, powerdev_session, sntp_on_123

# slow: one real power-dev session, about a minute; sntp123: it binds 127.0.0.1:123, so tools/test runs it alone
pytestmark = [pytest.mark.slow, pytest.mark.sntp123]

OFFICIAL_NAMES = OFFICIAL_CHECK_NAMES


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    if not (POWER_DEV / "compliance" / "check.py").is_file():
        pytest.skip(f"power-dev is not at {POWER_DEV} (see ../shared/vendor/README.md)")
    sntp = sntp_on_123()
    if sntp is None:
        pytest.skip("cannot serve SNTP on 127.0.0.1:123, which power-dev's client and server ask (port taken, or not allowed)")
    try:
        folder = powerdev_session(tmp_path_factory.mktemp("powerdev"))
        rc, _, text = official_check(folder)
        if rc != 0:
            # Once in about eight sessions on a loaded machine the official checker could not find
            # the ranging run in ptd_logs.txt ("Can not find ranging time"); labconsole failed it
            # too. That is the session harness, not the agreement under test: one more session.
            folder = powerdev_session(tmp_path_factory.mktemp("powerdev-again"))
            rc, _, again = official_check(folder)
            assert rc == 0, f"compliance/check.py failed two fresh sessions:\n{text}\n{again}"
        return folder
    finally:
        sntp.stop()


def _rehash(folder: Path, rel: str) -> None:
    """Rewrite `rel`'s SHA-1 in client.json and server.json as if power-dev had recorded it (or
    drop it where the file is gone)."""
    for side in ("client.json", "server.json"):
        p = folder / "power" / side
        obj = json.loads(p.read_text())
        if rel in obj["results"]:
            if (folder / rel).exists():
                obj["results"][rel] = hashlib.sha1((folder / rel).read_bytes()).hexdigest()
            else:
                del obj["results"][rel]
        p.write_text(json.dumps(obj, indent=4))


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def edit_watts(folder: Path) -> str:
    spl = folder / "run_1" / "spl.txt"
    lines = _lines(spl)
    i = len(lines) // 2
    parts = lines[i].split(",")
    parts[3] = f"{float(parts[3]) + 0.5:.6f}"  # half a watt, well inside PTD's min..max
    lines[i] = ",".join(parts)
    spl.write_text("".join(lines))
    return "run_1/spl.txt"


def delete_ptd_logs(folder: Path) -> str:
    (folder / "power" / "ptd_logs.txt").unlink()
    return "power/ptd_logs.txt"


def older_ptd(folder: Path) -> str:
    p = folder / "power" / "server.json"
    p.write_text(p.read_text().replace("version=1.11.1-", "version=1.10.0-"))
    return "power/server.json"  # not hashed by power-dev: rewriting changes nothing


def _move_power_begin(folder: Path, seconds: float) -> str:
    detail = folder / "run_1" / "mlperf_log_detail.txt"
    out = []
    for line in _lines(detail):
        if '"power_begin"' in line:
            entry = json.loads(line[len(":::MLLOG ") :])
            entry["value"] = format_power_time(parse_power_time(entry["value"]) + int(seconds * 1e9))
            line = ":::MLLOG " + json.dumps(entry) + "\n"
        out.append(line)
    detail.write_text("".join(out))
    return "run_1/mlperf_log_detail.txt"


def move_power_begin_an_hour(folder: Path) -> str:
    return _move_power_begin(folder, 3600)  # past power_end: the official DST allowance takes it


def move_power_begin_before_the_run(folder: Path) -> str:
    return _move_power_begin(folder, -120)


def ranging_far_above(folder: Path) -> str:
    spl = folder / "ranging" / "spl.txt"
    out = []
    for line in _lines(spl):
        parts = line.split(",")
        if line.startswith("Time") and float(parts[3]) > 0:
            parts[3] = f"{float(parts[3]) * 2:.6f}"
        out.append(",".join(parts))
    spl.write_text("".join(out))
    return "ranging/spl.txt"


def truncate_spl(folder: Path) -> str:
    spl = folder / "run_1" / "spl.txt"
    lines = [ln for ln in _lines(spl) if ln.startswith("Time")]
    spl.write_text("".join(lines[: len(lines) - 4]))  # the last 4 samples gone, the window still has some
    return "run_1/spl.txt"


DAMAGES = [edit_watts, delete_ptd_logs, older_ptd, move_power_begin_an_hour, move_power_begin_before_the_run, ranging_far_above, truncate_spl]


def _ours(folder: Path) -> tuple[bool, dict]:
    res = checks.run_checks(open_run(folder))
    return checks.passed(res), {r.name: r for r in res}


def _agree(folder: Path) -> tuple[int, dict, bool, dict, str]:
    rc, official, text = official_check(folder)
    ok, ours = _ours(folder)
    for name in OFFICIAL_NAMES:
        assert name in ours and ours[name].origin == OFFICIAL
        if name not in official:
            continue  # check.py stopped before it (a crash): judged overall below
        if official[name] != (ours[name].status != "fail"):
            # different verdict under the official name: our message says how the official tool differs
            assert "official" in ours[name].message, (name, official[name], ours[name].status, ours[name].message, text)
    if rc != 0:
        assert not ok, f"labconsole passes what compliance/check.py fails:\n{text}"
    elif not ok:
        failing = [r for r in ours.values() if r.status == "fail"]
        assert any("official" in r.message for r in failing), [(r.name, r.message) for r in failing]
    return rc, official, ok, ours, text


def test_the_official_checker_and_labconsole_pass_the_real_session(session):
    rc, official, ok, ours, text = _agree(session)
    assert rc == 0 and all(official.get(n) for n in OFFICIAL_NAMES), text
    assert ok
    assert all(ours[n].status == "pass" for n in OFFICIAL_NAMES), [(n, ours[n].message) for n in OFFICIAL_NAMES if ours[n].status != "pass"]
    assert ours["samples vs PTD's summary"].status == "pass"
    # recorded through labconsole's emulator: flagged, and still a pass
    assert ours["measurement evidence"].status == "warn" and "not measurement evidence" in ours["measurement evidence"].message
    out = run_cli("check", str(session), "--json")
    doc = json.loads(out.stdout)
    assert out.returncode == 0 and doc["rules"]["name"] == "current" and "power-dev c4b3ad8" in " ".join(doc["rules"]["why"])


@pytest.mark.parametrize("rehash", [False, True], ids=["hashes-kept", "hashes-rewritten"])
@pytest.mark.parametrize("damage", DAMAGES, ids=[d.__name__ for d in DAMAGES])
def test_damaged_copies_get_the_official_verdict_or_a_reason(session, tmp_path, damage, rehash):
    copy = tmp_path / session.name
    shutil.copytree(session, copy)
    rel = damage(copy)
    if rehash:
        _rehash(copy, rel)
    rc, official, ok, ours, text = _agree(copy)
    assert not ok  # every one of these damages fails labconsole's check
    if not rehash and rel != "power/server.json":
        assert rc != 0 and official["Check results checksum"] is False and ours["Check results checksum"].status == "fail"
    name = damage.__name__
    if rehash and name in ("edit_watts", "truncate_spl"):
        # the official checker hashes spl.txt, but a re-hashed edit passes it: ours compares the
        # samples with PTD's own summary of the run
        assert rc == 0, text
        assert ours["samples vs PTD's summary"].status == "fail"
    if name == "delete_ptd_logs":
        assert rc != 0 and ours["Check errors and warnings from PTD logs"].status == "fail"
        assert "ptd_logs.txt is missing" in ours["Check errors and warnings from PTD logs"].message
    if name == "older_ptd":
        assert official["Check PTD commands and replies"] is False and ours["Check PTD commands and replies"].status == "fail"
    if name == "move_power_begin_an_hour" and rehash:
        # the official DST allowance takes each end on its own: it passes; the rule means a window inside the run
        assert rc == 0, text
        assert ours["Check time difference"].status == "fail" and "DST workaround" in ours["Check time difference"].message
    if name == "move_power_begin_before_the_run":
        assert official["Check time difference"] is False and ours["Check time difference"].status == "fail"
    if name == "ranging_far_above":
        assert official["Check time difference"] is False and ours["Check time difference"].status == "fail"
        assert ours["ranging vs testing"].status == "fail"
