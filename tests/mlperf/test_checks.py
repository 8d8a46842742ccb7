"""Each check of `labconsole check` on hand-made power-dev session folders: passing, and failing on purpose."""

from __future__ import annotations

import json

import pytest

from labconsole.mlperf import checks
from labconsole.bundle.reader import open_run
from labconsole.instruments.ptd import format_power_time
from powerdev_fakes import make_session, ptd_time


def results(path):
    return {r.name: r for r in checks.run_checks(open_run(path))}


def verdict(path, name):
    r = results(path)[name]
    return r.status, r.message


@pytest.fixture
def session(tmp_path):
    return make_session(tmp_path / "perf")


def test_a_clean_session_passes_every_check_it_can(session):
    res = results(session.root)
    for name, r in res.items():
        if name in ("Check client sources checksum", "Check server sources checksum"):
            assert r.status == "pass" and "the set today's sources_checksums.json accepts" in r.message
        elif name == "minimum duration":
            assert r.status == "warn" and "not submission grade" in r.message  # a 60 s session
        elif name in ("calibration", "scope cross-check", "node reporting"):  # node reporting: fleet runs only
            assert r.status == "skip"
        else:
            assert r.status == "pass", (name, r.message)
    assert {r.origin for r in res.values()} == {"mlperf", "labconsole"}
    assert checks.passed(list(res.values()))


def test_six_hundred_seconds_is_submission_grade(tmp_path):
    s = make_session(tmp_path / "perf", duration_s=605)
    assert verdict(s.root, "minimum duration")[0] == "pass"


# --- 1, 2 ------------------------------------------------------------------------------------------
def test_sources_differ_between_client_and_server(session):
    # power-dev's sources_checksums.json is a list of accepted sets, each side compared with it
    # on its own: two sides from two accepted releases both pass (issue 13, item 3)
    session.server["sources"]["lib/common.py"] = "0" * 40
    session.save()
    res = results(session.root)
    st, msg = res["Check server sources checksum"].status, res["Check server sources checksum"].message
    # today's checker accepts one set: the edited server side fails, the client side still passes
    assert st == "fail" and "lib/common.py" in msg and "which is allowed" in msg and "not the set today's checker accepts" in msg
    assert res["Check client sources checksum"].status == "pass"


# --- 3 ----------------------------------------------------------------------------------------------
def test_ptd_wrong_reply(session):
    session.ptd("SR,A,0.55")[0]["reply"] = "Error: range"
    session.save()
    st, msg = verdict(session.root, "Check PTD commands and replies")
    assert st == "fail" and "wrong reply for 'SR,A,0.55'" in msg


@pytest.mark.parametrize("version", ["1.9.1", "1.9.2", "1.10.0", "1.8.0"])
def test_ptd_version_an_earlier_round_accepted_fails_under_current_rules(tmp_path, version):
    # today's power-dev sources: today's rules, which accept PTD 1.11.1 only (issue 13, item 5)
    old = make_session(tmp_path / "a", version=version)
    st, msg = verdict(old.root, "Check PTD commands and replies")
    assert st == "fail" and f"PTD version '{version}' is not one today's checker" in msg and "(1.11.1)" in msg
    if version != "1.8.0":
        assert "it was accepted in round(s)" in msg


def test_ptd_unsupported_meter(tmp_path):
    s = make_session(tmp_path / "a", model="HiokiPW3335")
    st, msg = verdict(s.root, "Check PTD commands and replies")
    assert st == "fail" and "HiokiPW3335" in msg


def test_ptd_initial_ranges_not_restored(session):
    session.server["ptd_messages"] = session.server["ptd_messages"][:-2]  # no SR,V/SR,A restore at the end
    session.save()
    st, msg = verdict(session.root, "Check PTD commands and replies")
    assert st == "fail" and "not restored" in msg


def test_ptd_third_stop_may_report_nothing_to_stop(session):
    session.server["ptd_messages"].insert(-2, {"cmd": "Stop", "reply": "Error: no measurement to stop"})
    session.save()
    assert verdict(session.root, "Check PTD commands and replies")[0] == "pass"


# --- 4, 5 -------------------------------------------------------------------------------------------------
def test_uuid_mismatch(session):
    session.client["uuid"]["server"] = "00000000-0000-4000-8000-000000000000"
    session.save()
    st, msg = verdict(session.root, "Check UUID")
    assert st == "fail" and "server uuid" in msg


def test_session_name_mismatch(session):
    session.server["session_name"] = "2023-11-14_22-13-21"
    session.save()
    assert verdict(session.root, "Check session name")[0] == "fail"


def test_samples_from_another_session(session):
    spl = session.root / "run_1" / "spl.txt"
    spl.write_text(spl.read_text().replace(f"{session.session}_testing", "2020-01-01_00-00-00_testing"))
    session.rehash()
    st, msg = verdict(session.root, "Check session name")
    assert st == "fail" and "run_1/spl.txt" in msg


# --- 6 -------------------------------------------------------------------------------------------------------
def test_client_server_phase_stamps_too_far_apart(session):
    session.server["phases"]["testing"][2][0] += 0.9
    session.save()
    st, msg = verdict(session.root, "Check time difference")
    assert st == "fail" and "920 ms" in msg  # server stamps run 20 ms behind in the fake


def test_loadgen_window_outside_the_phase(session):
    session.client["phases"]["testing"][1][0] = session.testing_window[0] + 1  # Go after power_begin
    session.server["phases"]["testing"][1][0] = session.testing_window[0] + 1
    session.save()
    st, msg = verdict(session.root, "Check time difference")
    assert st == "fail" and "not within the client's testing phase" in msg


def test_loadgen_window_one_hour_off_is_the_dst_workaround(session):
    for side in (session.client, session.server):
        for ph in side["phases"]["testing"]:
            ph[0] -= 3600
    session.save()
    st, msg = verdict(session.root, "Check time difference")
    assert st == "warn" and "DST" in msg


# --- 7 -------------------------------------------------------------------------------------------------------
def test_messages_differ(tmp_path):
    a = make_session(tmp_path / "a")
    a.server["messages"] = a.server["messages"][:-1]
    a.save()
    assert "list length" in verdict(a.root, "Check client server messages")[1]
    b = make_session(tmp_path / "b")
    b.server["messages"][4]["reply"] = "Error"
    b.save()
    st, msg = verdict(b.root, "Check client server messages")
    assert st == "fail" and "replies to" in msg
    c = make_session(tmp_path / "c")
    c.server["messages"][0]["reply"] = c.client["messages"][0]["reply"] = "mlcommons/power server v2"
    c.save()
    st, msg = verdict(c.root, "Check client server messages")
    assert st == "fail" and "v3 is not server.py v2" in msg


def test_time_replies_may_differ(session):
    session.server["messages"][1]["reply"] = "123.0"
    session.save()
    assert verdict(session.root, "Check client server messages")[0] == "pass"


# --- 8 -----------------------------------------------------------------------------------------------------------
def test_a_changed_result_file_fails_its_checksum(session):
    spl = session.root / "run_1" / "spl.txt"
    spl.write_bytes(spl.read_bytes().replace(b"\n", b"\r\n"))  # what a CRLF conversion does
    st, msg = verdict(session.root, "Check results checksum")
    assert st == "fail" and "run_1/spl.txt: SHA-1" in msg
    # ... while the metric still reads the file (CRLF handled)
    assert results(session.root)["power window"].status == "pass"


@pytest.mark.parametrize("name", ["power/server.log", "power/ptd_logs.txt", "power/client.log", "ranging/spl.txt"])
def test_an_absent_required_file_fails_naming_it(session, name):
    (session.root / name).unlink()
    res = results(session.root)
    st, msg = res["Check results checksum"].status, res["Check results checksum"].message
    assert st == "fail" and name in msg and "official checker fails a folder with absent files" in msg
    assert res["files present"].status == "fail" and f"required but missing: {name}" in res["files present"].message
    assert res["submission file lists"].status == "fail"
    assert not checks.passed(list(res.values()))


# --- 9 -----------------------------------------------------------------------------------------------------------
def _add_ptd_lines(session, *lines):
    p = session.root / "power" / "ptd_logs.txt"
    p.write_text(p.read_text() + "\n".join(lines) + "\n")
    session.rehash()


def test_ptd_error_outside_ranging_fails(session):
    _add_ptd_lines(session, f"{ptd_time(session.testing_window[0] + 5)}: ERROR: Bad amps reading nan from WT310")
    st, msg = verdict(session.root, "Check errors and warnings from PTD logs")
    assert st == "fail" and "outside the ranging run" in msg


def test_ptd_usb_error_is_accepted_as_a_warning(session):
    _add_ptd_lines(session, f"{ptd_time(session.testing_window[0] + 5)}: ERROR: USB.")
    assert verdict(session.root, "Check errors and warnings from PTD logs")[0] == "warn"


def test_uncommon_error_during_ranging_warns(session):
    _add_ptd_lines(session, f"{ptd_time(session.ranging_window[0] + 5)}: ERROR: Something unusual")
    st, msg = verdict(session.root, "Check errors and warnings from PTD logs")
    assert st == "warn" and "uncommon error during ranging" in msg


def test_uncertainty_above_limit_in_testing_fails_our_check_and_the_official_one_gives_its_verdict(session):
    _add_ptd_lines(session, f"{ptd_time(session.testing_window[0] + 5)}: WARNING: Uncertainty 1.23%, which is above 1.00% limit for the last sample!")
    # ours, stricter: inside the window
    st, msg = verdict(session.root, "PTD warnings in the testing window")
    assert st == "fail" and "above PTD's 1.00 % uncertainty limit" in msg and "stricter than the official checker" in msg
    # the official one: a 60 s run, so power_begin+800 s > power_end-800 s and it sees nothing
    st, msg = verdict(session.root, "Check errors and warnings from PTD logs")
    assert st == "pass" and "power_begin+800 s to power_end-800 s" in msg


def test_uncertainty_above_limit_inside_the_official_slip_fails_the_official_check(tmp_path):
    s = make_session(tmp_path / "perf", duration_s=1700)  # long enough for power_begin+800 s < t < power_end-800 s
    _add_ptd_lines(s, f"{ptd_time(s.testing_window[0] + 850)}: WARNING: Uncertainty 1.23%, which is above 1.00% limit for the last sample!")
    st, msg = verdict(s.root, "Check errors and warnings from PTD logs")
    assert st == "fail" and "during the testing run" in msg


def test_other_warning_in_testing_warns(session):
    _add_ptd_lines(session, f"{ptd_time(session.testing_window[0] + 5)}: WARNING: Voltage dropped")
    assert verdict(session.root, "PTD warnings in the testing window")[0] == "warn"
    assert verdict(session.root, "Check errors and warnings from PTD logs")[0] == "pass"  # outside its 800 s slip


def test_an_error_after_a_warning_still_fails_and_says_the_official_tool_misses_it(session):
    _add_ptd_lines(
        session,
        f"{ptd_time(session.testing_window[0] + 3)}: ERROR: USB.",
        f"{ptd_time(session.testing_window[0] + 5)}: ERROR: Bad amps reading nan from WT310",
    )
    st, msg = verdict(session.root, "Check errors and warnings from PTD logs")
    assert st == "fail" and "outside the ranging run" in msg and "stops at its first warning" in msg


def test_uncertainty_checking_must_be_activated_before_ranging(session):
    p = session.root / "power" / "ptd_logs.txt"
    lines = [ln for ln in p.read_text().splitlines() if "Uncertainty checking" not in ln]
    p.write_text("\n".join(lines) + "\n")
    session.rehash()
    st, msg = verdict(session.root, "Check errors and warnings from PTD logs")
    assert st == "fail" and "is activated" in msg
    _add_ptd_lines(session, f"{ptd_time(session.ranging_window[1])}: Uncertainty checking for YokogawaWT310E is activated")
    st, msg = verdict(session.root, "Check errors and warnings from PTD logs")
    assert st == "fail" and "after the ranging run started" in msg


def test_missing_ptd_logs_fails(session):
    (session.root / "power" / "ptd_logs.txt").unlink()
    st, msg = verdict(session.root, "Check errors and warnings from PTD logs")
    assert st == "fail" and "ptd_logs.txt is missing" in msg and "required" in msg


# --- 10, 11 --------------------------------------------------------------------------------------------------------
def test_unsupported_device_type(tmp_path):
    s = make_session(tmp_path / "a", device_type=99)
    st, msg = verdict(s.root, "Check PTD configuration")
    assert st == "fail" and "99" in msg


def test_multichannel_wt330_needs_two_channels(session):
    session.server["ptd_config"][0]["device_type"] = 77
    session.server["ptd_messages"][1]["reply"] = session.server["ptd_messages"][1]["reply"].replace("YokogawaWT310E", "YokogawaWT330_multichannel")
    session.save()
    st, msg = verdict(session.root, "Check PTD configuration")
    assert st == "fail" and "multichannel" in msg
    session.server["ptd_config"][0].update(command=["ptd", "-c", "1,3", "77", "x"], channel=[1, 3])
    session.save()
    assert verdict(session.root, "Check PTD configuration")[0] == "pass"


def test_pre_2024_single_analyzer_config_fails_under_current_rules_and_passes_under_its_rounds(session):
    session.server["ptd_config"] = session.server["ptd_config"][0]
    session.save()
    st, msg = verdict(session.root, "Check PTD configuration")
    assert st == "fail" and "single-analyzer form" in msg and "reads a list" in msg
    res = {r.name: r for r in checks.run_checks(open_run(session.root), "v4.0")}["Check PTD configuration"]
    assert res.status == "pass" and "today's checker expects a list" in res.message


def test_debug_mode_fails(session):
    session.server["debug"] = True
    session.save()
    assert verdict(session.root, "Check debug is disabled on server-side")[0] == "fail"


# --- the -5 % rule ----------------------------------------------------------------------------------------------------
def test_testing_more_than_five_percent_below_ranging_fails(tmp_path):
    s = make_session(tmp_path / "a", ranging_w=100.0, testing_w=94.0)
    st, msg = verdict(s.root, "ranging vs testing")
    assert st == "fail" and "-6.00 %" in msg


def test_five_percent_edge_follows_the_official_rounding(tmp_path):
    # 95.006 / 100 - 1 = -4.994 %: rounds to -4.99 and passes.
    ok = make_session(tmp_path / "a", ranging_w=100.0, testing_w=95.006)
    assert verdict(ok.root, "ranging vs testing")[0] == "pass"
    # 95.004 / 100 - 1 = -4.996 % is above -5 %, but the checker rounds it to -5.00, which fails.
    edge = make_session(tmp_path / "b", ranging_w=100.0, testing_w=95.004)
    st, msg = verdict(edge.root, "ranging vs testing")
    assert st == "fail" and "official checker rounds" in msg


def test_missing_ranging_data_is_named(session):
    (session.root / "ranging" / "spl.txt").unlink()
    st, msg = verdict(session.root, "ranging vs testing")
    assert st == "warn" and "ranging samples (spl.txt)" in msg


# --- ours ------------------------------------------------------------------------------------------------------------------
def test_invalid_readings_are_counted_and_excluded(tmp_path):
    s = make_session(tmp_path / "a", testing_w=lambda i: -1 if i % 10 == 5 else 100.0)
    st, msg = verdict(s.root, "invalid samples")
    assert st == "warn" and "no_data 6" in msg
    assert results(s.root)["power window"].message.endswith("average 100.000000 W")


def test_a_gap_in_the_samples(tmp_path):
    s = make_session(tmp_path / "a")
    spl = s.root / "run_1" / "spl.txt"
    lines = spl.read_text().splitlines()
    spl.write_text("\n".join(lines[:20] + lines[24:]) + "\n")  # 4 s missing out of 56 s
    st, msg = verdict(s.root, "sample regularity")
    assert st == "warn" and "1 gap(s)" in msg
    spl.write_text("\n".join(lines[:10] + lines[30:]) + "\n")  # 20 s missing: more than 10 %
    assert verdict(s.root, "sample regularity")[0] == "fail"


def test_uncertainty_from_ptd_reply(tmp_path):
    hi = make_session(tmp_path / "a", testing_uncertainty="Uncertainty,0.012,0.011,0.013,{n},{n},0,0")
    assert verdict(hi.root, "uncertainty")[0] == "fail"
    some = make_session(tmp_path / "b", testing_uncertainty="Uncertainty,0.008,0.007,0.0136,{n},3,57,0")
    st, msg = verdict(some.root, "uncertainty")
    assert st == "warn" and "3 sample(s) above the limit" in msg and "800 s" in msg
    unknown = make_session(tmp_path / "c", testing_uncertainty="Uncertainty,-1.0,10000000.000000,0.000000,{n},0,0,{n}")
    assert verdict(unknown.root, "uncertainty")[0] == "fail"


def test_clock_offsets_beyond_400_ms_fail(tmp_path):
    s = make_session(tmp_path / "a", ntp_offset_s=0.5)
    st, msg = verdict(s.root, "clock offset")
    assert st == "fail" and "500 ms" in msg
    t = make_session(tmp_path / "b")
    t.client["messages"][1]["reply"] = str(t.client["messages"][1]["cmd_time"] + 0.45)
    t.save()
    assert verdict(t.root, "clock offset")[0] == "fail"


def test_loadgen_invalid_and_error_lines_fail(tmp_path):
    s = make_session(tmp_path / "a")
    from mlperf_fakes import write_detail_log

    b, e = s.testing_window
    write_detail_log(s.root / "run_1", "Offline", int(b * 1e9), int(e * 1e9), validity="INVALID", errors=["Attempted to complete a sample twice."])
    s.rehash()
    res = results(s.root)
    assert res["loadgen validity"].status == "fail"
    assert res["loadgen errors"].status == "fail" and "complete a sample twice" in res["loadgen errors"].message


def test_missing_json_says_what_is_missing(session):
    (session.root / "power" / "client.json").unlink()
    res = results(session.root)
    assert res["Check UUID"].status == "fail" and "power/client.json is missing" in res["Check UUID"].message
    assert res["Check client server messages"].status == "fail"
    assert res["files present"].status == "fail" and "power/client.json" in res["files present"].message


def test_check_json_contract_through_the_cli(session):
    from conftest import run_cli

    session.server["debug"] = True
    session.save()
    out = run_cli("check", str(session.root), "--json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc["kind"] == "mlperf" and doc["passed"] is False
    for c in doc["checks"]:
        assert set(c) == {"name", "status", "message", "origin"}
        assert c["status"] in ("pass", "warn", "fail", "skip") and c["message"]


# --- where the official tool is wrong, the rule is kept and the difference said (issue 13, item 7) ----------------
def test_the_minus_5_percent_rule_applies_even_where_the_official_duration_warning_stops_it(tmp_path):
    s = make_session(tmp_path / "perf", testing_w=80.0)  # testing 20 % below ranging
    detail = s.root / "run_1" / "mlperf_log_detail.txt"
    # the testing window cut to a third of ranging's: the official checker warns and stops
    b, e = s.testing_window
    text = detail.read_text().replace(format_power_time(int(e * 1e3) * 1_000_000), format_power_time(int((b + (e - b) / 3) * 1e3) * 1_000_000))
    detail.write_text(text)
    s.rehash()
    res = results(s.root)
    assert res["ranging vs testing"].status == "fail"
    assert "the official checker does not apply this rule here" in res["ranging vs testing"].message
    assert res["Check time difference"].status == "warn" and "shorter than ranging" in res["Check time difference"].message


def test_a_power_begin_moved_past_power_end_fails_and_names_the_dst_allowance(session):
    detail = session.root / "run_1" / "mlperf_log_detail.txt"
    b = session.testing_window[0]
    detail.write_text(detail.read_text().replace(format_power_time(int(b * 1e3) * 1_000_000), format_power_time(int((b + 3600) * 1e3) * 1_000_000)))
    session.rehash()
    res = results(session.root)["Check time difference"]
    assert res.status == "fail" and "is not before power_end" in res.message and "DST workaround" in res.message
