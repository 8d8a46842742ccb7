"""The catalogue of recordings (bundle.catalogue) and a recording's headline (mlperf.summary),
headless: what the Recordings screen lists and fills in."""

from __future__ import annotations

import json

from conftest import FIXTURES
import pytest

from labconsole.bundle.catalogue import CatalogueError, delete_recording, is_running, list_bundles, not_a_recording, opened_row, write_note
from labconsole.mlperf.summary import headline

MLPERF = FIXTURES / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline"


def _bundle(folder, name, run):
    (folder / name / "data").mkdir(parents=True)
    if run is not None:
        (folder / name / "data" / "run.json").write_text(run)


def test_list_bundles_newest_first_from_run_json_only(tmp_path):
    _bundle(tmp_path, "2025-01-01T00-00-00Z_a_Offline", json.dumps({"start": "2025-01-01T00:00:00Z", "profile": {"name": "a"}, "scenario": "Offline", "exit_status": "completed"}))
    _bundle(tmp_path, "2025-02-01T00-00-00Z_b_Server", json.dumps({"start": "2025-02-01T00:00:00Z", "profile": {"name": "b"}, "scenario": "Server", "exit_status": "aborted"}))
    _bundle(tmp_path, "2025-03-01T00-00-00Z_broken", "{not json")  # listed, from its name
    _bundle(tmp_path, "not-a-bundle", None)  # no run.json: left out
    rows = list_bundles(tmp_path)
    assert [r["path"].name for r in rows] == ["2025-03-01T00-00-00Z_broken", "2025-02-01T00-00-00Z_b_Server", "2025-01-01T00-00-00Z_a_Offline"]
    assert rows[0] == {"path": tmp_path / "2025-03-01T00-00-00Z_broken", "start": "2025-03-01T00-00-00Z", "profile": "?", "scenario": "?", "status": "?", "note": ""}
    assert (rows[1]["profile"], rows[1]["scenario"], rows[1]["status"]) == ("b", "Server", "aborted")
    assert list_bundles(tmp_path / "nowhere") == []


def test_a_folder_opened_by_path_is_a_bundle_or_an_mlperf_result(tmp_path):
    assert not_a_recording(MLPERF) is None
    _bundle(tmp_path, "b", "{}")
    assert not_a_recording(tmp_path / "b") is None
    assert "not a bundle or an MLPerf power result folder" in not_a_recording(tmp_path)
    assert not_a_recording(tmp_path / "nowhere") is not None
    assert opened_row(MLPERF)["profile"] == "(opened by path)"


def test_headline_of_an_mlperf_result_folder():
    h = headline(MLPERF)
    assert h["status"] == "MLPerf" and h["scenario"] == "Offline"
    assert h["metric"].endswith(" W") and h["checks"] in ("pass", "warn", "fail")
    assert sum(h["counts"].values()) > 0


def test_a_running_bundle_is_running_while_its_folder_is_locked_and_unsealed_after(tmp_path):
    from labconsole.locks import recordings_lock

    _bundle(tmp_path, "2025-01-01T00-00-00Z_old", json.dumps({"start": "2025-01-01T00:00:00Z", "exit_status": "running"}))
    _bundle(tmp_path, "2025-02-01T00-00-00Z_new", json.dumps({"start": "2025-02-01T00:00:00Z", "exit_status": "running"}))
    with recordings_lock(tmp_path):
        assert [r["status"] for r in list_bundles(tmp_path)] == ["running", "unsealed"]  # only the newest can be the run
        assert is_running(tmp_path / "2025-02-01T00-00-00Z_new")
        with pytest.raises(CatalogueError, match="being recorded"):
            delete_recording(tmp_path / "2025-02-01T00-00-00Z_new")
    assert [r["status"] for r in list_bundles(tmp_path)] == ["unsealed", "unsealed"]
    assert not is_running(tmp_path / "2025-02-01T00-00-00Z_new")


def test_a_note_lives_beside_the_bundle_and_goes_with_it(tmp_path):
    _bundle(tmp_path, "b", json.dumps({"exit_status": "completed"}))
    assert write_note(tmp_path / "b", "  fan\noff  [bold]x ") == "fan off [bold]x"  # one line, as written
    assert (tmp_path / "b.note.txt").read_text() == "fan off [bold]x\n"
    assert not any(p.name.endswith(".note.txt") for p in (tmp_path / "b").rglob("*"))  # never inside the bundle
    assert list_bundles(tmp_path)[0]["note"] == "fan off [bold]x"
    assert write_note(tmp_path / "b", "") == "" and not (tmp_path / "b.note.txt").exists()
    with pytest.raises(CatalogueError, match="never written to"):
        write_note(MLPERF, "x")
    write_note(tmp_path / "b", "keep")
    delete_recording(tmp_path / "b")
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.note.txt").exists()
    with pytest.raises(CatalogueError, match="not a labconsole bundle"):
        delete_recording(MLPERF)
