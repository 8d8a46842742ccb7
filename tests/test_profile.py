"""The profile loader: every mistake is FILE:LINE: field.path: reason, exit status 2."""

from __future__ import annotations

import pytest

from conftest import ROOT, run_cli, write_profile
from labconsole.profile import ProfileError, load_profile, parse_profile_text

GOOD = """
name: bench
sources:
  - name: wall
    driver: simulated
    sample_interval_s: 0.1
    options:
      idle_w: 50
workload:
  type: loadgen
  sut: matmul
  scenario: Offline
  duration_s: 5
"""


def issues_of(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(ProfileError) as exc:
        parse_profile_text(data, "p.yaml")
    return [str(i) for i in exc.value.issues]


def test_good_profile_loads():
    profile, lines, _ = parse_profile_text(GOOD.encode(), "p.yaml")
    assert profile.name == "bench"
    assert profile.primary_source.name == "wall"
    assert lines[("workload", "scenario")] == 12


def test_shipped_profiles_load():
    for path in sorted((ROOT / "profiles").glob("*.yaml")):
        load_profile(path)


def test_unknown_key_is_an_error_with_its_line():
    text = GOOD.replace("  duration_s: 5", "  duraton_s: 5")
    assert issues_of(text) == ["p.yaml:13: workload.duraton_s: unknown key (not allowed here; check the spelling)"]


def test_unknown_nested_key_in_driver_options():
    text = GOOD.replace("      idle_w: 50", "      idle_w: 50\n      idel_w: 3")
    assert issues_of(text) == ["p.yaml:9: sources[0].options.idel_w: unknown key (not allowed here; check the spelling)"]


def test_wrong_type_names_field_and_value():
    text = GOOD.replace("sample_interval_s: 0.1", "sample_interval_s: fast")
    (msg,) = issues_of(text)
    assert msg.startswith("p.yaml:6: sources[0].sample_interval_s: ")
    assert "'fast'" in msg


def test_out_of_range_numbers():
    text = GOOD.replace("duration_s: 5", "duration_s: 1e300")
    (msg,) = issues_of(text)
    assert msg.startswith("p.yaml:13: workload.duration_s: ")
    text = GOOD.replace("duration_s: 5", "duration_s: .inf")
    assert issues_of(text)[0].startswith("p.yaml:13: workload.duration_s: ")


def test_missing_required_field():
    text = GOOD.replace("    driver: simulated\n", "")
    assert issues_of(text) == ["p.yaml:4: sources[0].driver: required but missing"]


def test_unknown_driver_lists_known_ones():
    (msg,) = issues_of(GOOD.replace("driver: simulated", "driver: simulatd"))
    assert msg.startswith("p.yaml:5: sources[0].driver: unknown driver 'simulatd' (known: ")
    assert "simulated" in msg


def test_bad_scenario_and_sut_options():
    msgs = issues_of(GOOD.replace("scenario: Offline", "scenario: Ofline"))
    assert msgs[0].startswith("p.yaml:12: workload.scenario: ")
    msgs = issues_of(GOOD.replace("  sut: matmul", "  sut: matmul\n  sut_options: {size: 2}"))
    assert msgs[0].startswith("p.yaml:12: workload.sut_options.size: ")


def test_workload_type_defaults_to_loadgen_and_a_wrong_one_is_named():
    profile, _, _ = parse_profile_text(GOOD.replace("  type: loadgen\n", "").replace("sut: matmul", "sut: null").encode(), "p.yaml")
    assert (profile.workload.type, profile.workload.sut) == ("loadgen", "null")  # YAML's null is the null SUT
    assert issues_of(GOOD.replace("type: loadgen", "type: lodgen")) == ["p.yaml:10: workload.type: must be loadgen, command or tiny (got 'lodgen')"]
    assert issues_of(GOOD.split("workload:")[0] + "workload: 5\n") == ["p.yaml:9: workload: must be a mapping of workload settings (got 5)"]
    assert issues_of(GOOD.replace("type: loadgen", "type: command")) == [
        "p.yaml:9: workload.command: required but missing", "p.yaml:9: workload.loadgen_logs: required but missing",
        "p.yaml:11: workload.sut: unknown key (not allowed here; check the spelling)"]


def test_duplicate_key_is_an_error():
    text = GOOD.replace("  duration_s: 5", "  duration_s: 5\n  duration_s: 6")
    assert issues_of(text) == ["p.yaml:14: workload.duration_s: duplicate key"]


def test_empty_and_comment_only_files():
    assert issues_of("") == ["p.yaml:1: the profile is empty"]
    assert issues_of("# nothing\n\n") == ["p.yaml:1: the profile is empty"]


def test_not_utf8_names_line():
    (msg,) = issues_of(b"name: x\nsources:\n  - name: \xff\xfe\n")
    assert msg.startswith("p.yaml:3: not UTF-8 text")


def test_yaml_syntax_error_has_line():
    (msg,) = issues_of("name: x\nsources: [\n  - a: b\n")
    assert msg.startswith("p.yaml:")
    assert "YAML syntax error" in msg


def test_alias_bomb_is_refused_quickly():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    prev = "a"
    for i in range(2, 12):
        name = f"l{i}"
        bomb += f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        prev = name
    (msg,) = issues_of(bomb)
    assert "too large" in msg


def test_top_level_must_be_mapping():
    assert issues_of("- a\n- b\n")[0].startswith("p.yaml:1: the top level must be a mapping")


def test_duplicate_source_names():
    text = GOOD + "  \n"
    text = text.replace("sources:\n", "sources:\n  - name: wall\n    driver: simulated\n")
    msgs = issues_of(text)
    assert any("source names must be unique" in m for m in msgs)


def test_cli_reports_profile_errors_without_traceback(tmp_path):
    path = write_profile(tmp_path, GOOD.replace("duration_s: 5", "duration_s: -1"))
    out = run_cli("run", "--profile", str(path))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().startswith(f"{path}:12: workload.duration_s: ")


def test_cli_missing_profile_file(tmp_path):
    out = run_cli("run", "--profile", str(tmp_path / "nope.yaml"))
    assert out.returncode == 2
    assert out.stderr.strip() == f"{tmp_path / 'nope.yaml'}:1: no such file"
