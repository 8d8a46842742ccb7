"""Bundles: write, seal, verify, tamper, recover."""

from __future__ import annotations

import json

from conftest import run_cli
from labconsole.procedure.recover import recover
from labconsole.bundle.seal import is_sealed, verify
from labconsole.bundle.writer import BundleWriter, safe_name


def make_writer(tmp_path):
    w = BundleWriter.create(tmp_path / "rec", "my bench/../x", "Offline")
    w.write_text("profile.yaml", "name: x\n")
    w.update_run(id="abc", exit_status="running", profile={"name": "x"})
    (w.phase_dir("testing") / "samples-wall.csv").write_text("header\n1,2\n")
    return w


def test_names_are_sanitised_and_stay_inside(tmp_path):
    w = make_writer(tmp_path)
    assert w.root.parent == tmp_path / "rec"
    assert "/" not in w.root.name and ".." not in w.root.name
    assert safe_name("../../etc/passwd") == "etc-passwd"
    assert safe_name("") == "run"


def test_seal_then_verify_round_trip(tmp_path):
    w = make_writer(tmp_path)
    w.seal("completed")
    assert is_sealed(w.root)
    v = verify(w.root)
    assert v.ok, v.problems
    info = (w.root / "bag-info.txt").read_text()
    assert "Payload-Oxum: " in info
    assert (w.root / "bagit.txt").read_text().startswith("BagIt-Version: 1.0\n")
    assert json.loads((w.root / "data" / "run.json").read_text())["exit_status"] == "completed"


def test_changed_added_removed_files_are_named(tmp_path):
    w = make_writer(tmp_path)
    w.seal("completed")
    samples = w.root / "data" / "testing" / "samples-wall.csv"
    data = bytearray(samples.read_bytes())
    data[0] ^= 0x20
    samples.write_bytes(bytes(data))
    (w.root / "data" / "extra.txt").write_text("x")
    (w.root / "data" / "profile.yaml").unlink()
    problems = verify(w.root).problems
    assert "data/testing/samples-wall.csv: changed after sealing (checksum differs)" in problems
    assert "data/extra.txt: added after sealing (not in the manifest)" in problems
    assert "data/profile.yaml: missing (listed in the manifest)" in problems


def test_unsealed_bundle_is_reported_and_recover_seals_it(tmp_path):
    w = make_writer(tmp_path)
    w.close_events()
    assert not verify(w.root).sealed
    out = run_cli("check", str(w.root), "--json")
    assert out.returncode == 1
    res = json.loads(out.stdout)
    manifest = [c for c in res["checks"] if c["name"] == "manifest"][0]
    assert manifest["status"] == "fail" and "not sealed" in manifest["message"]
    recover(w.root)
    assert verify(w.root).ok
    assert json.loads((w.root / "data" / "run.json").read_text())["exit_status"] == "recovered"
