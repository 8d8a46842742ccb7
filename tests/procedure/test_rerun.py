"""`labconsole run --from BUNDLE`: the same measurement again, and what changed on the bench."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES, run_cli
from labconsole import cli
from labconsole.bundle.environment_diff import ERROR, INFO, WARNING, diff_environments
from labconsole.bundle.seal import seal
from labconsole.bundle.environment import collect
from labconsole.workload.loadgen_log import parse_detail_log
from labconsole.procedure.rerun import RerunError, check_bench, plan_rerun, probe_bench
from labconsole.sources.base import Capabilities, DriverOptions, Identity, Source, SourceUnavailable

NOISE_W = 0.5
UTILISATION = 0.5  # constant: the simulated reading then varies by its noise alone
IDLE_W, DYNAMIC_W = 60.0, 140.0

RERUN_PROFILE = """
name: rerun-bench
recordings: {rec}
sources:
  - name: wall
    driver: simulated
    sample_interval_s: 0.05
    options:
      idle_w: {idle}
      dynamic_w: {dyn}
      noise_w: {noise}
      utilisation: {util}
workload:
  type: loadgen
  sut: sleep                      # a modelled capacity: a reused target QPS never outruns it
  sut_options: {{latency_ms: 1, concurrency: 4}}
  scenario: Offline
  duration_s: 2
procedure:
  idle_s: 1
"""


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """One short run on the simulated bench; the tests rerun it."""
    d = tmp_path_factory.mktemp("rerun")
    prof = d / "bench.yaml"
    prof.write_text(RERUN_PROFILE.format(rec=d / "recordings", idle=IDLE_W, dyn=DYNAMIC_W, noise=NOISE_W, util=UTILISATION), encoding="utf-8")
    out = run_cli("run", "--profile", str(prof), "--quiet", cwd=d, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    return d, Path(out.stdout.strip().splitlines()[-1])


def _run_json(bundle: Path) -> dict:
    return json.loads((bundle / "data" / "run.json").read_text())


def _effective_settings(bundle: Path) -> dict:
    log = parse_detail_log(bundle / "data" / "testing" / "loadgen" / "mlperf_log_detail.txt")
    return {k: v for k, v in log.values.items() if k.startswith("effective_")}


def _agreement_tolerance(n_a: int, n_b: int, sigma: float = NOISE_W, k: float = 5.0) -> float:
    """k standard errors of the difference of two means of n_a and n_b samples with noise sigma.

    Each reading is the model's constant power plus Gaussian noise of sd `noise_w`, so a mean of
    n readings has standard error noise_w / sqrt(n) and the difference of two independent
    means noise_w * sqrt(1/n_a + 1/n_b). At k = 5 a correct rerun fails once in ~1.7 million.
    """
    return k * sigma * math.sqrt(1.0 / n_a + 1.0 / n_b)


def test_a_rerun_repeats_the_measurement_and_agrees_within_the_noise(original):
    d, first = original
    out = run_cli("run", "--from", str(first), "--quiet", cwd=d, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "reusing the measured LoadGen settings" in out.stdout
    second = Path(out.stdout.strip().splitlines()[-1])
    assert second != first and second.is_dir()

    a, b = _run_json(first), _run_json(second)
    # The bundle alone gave the same profile, workload, seeds, durations and auto values.
    assert (first / "data" / "profile.yaml").read_bytes() == (second / "data" / "profile.yaml").read_bytes()
    assert b["profile"]["sha256"] == a["profile"]["sha256"]
    assert b["workload"] == a["workload"] and b["procedure"] == a["procedure"]
    assert (b["scenario"], b["duration_s"], b["overrides"]) == (a["scenario"], a["duration_s"], a["overrides"])
    assert b["workload_resolved_reused"] is True
    assert b["workload_resolved"]["target_qps"] == a["workload_resolved"]["target_qps"]
    assert b["rerun_of"]["id"] == a["id"]
    assert b["rerun_of"]["reused_settings"]["target_qps"] == a["workload_resolved"]["target_qps"]
    assert not [x for x in b["rerun_of"]["differences"] if x["severity"] == ERROR]
    # LoadGen ran with identical settings: every effective_* value (seeds, QPS, durations, counts).
    assert _effective_settings(first) == _effective_settings(second)
    assert not (second / "data" / "probe").exists()  # the SUT was not probed again

    cmp = json.loads(run_cli("compare", str(first), str(second), "--json", cwd=d).stdout)
    assert cmp["same_scenario"] is True
    assert "B is a rerun of A (labconsole run --from)" in cmp["notes"]
    figs = {f["key"]: f for f in cmp["figures"]}
    ra = json.loads(run_cli("report", str(first), "--json").stdout)
    rb = json.loads(run_cli("report", str(second), "--json").stdout)

    power = figs["avg_power"]
    n_a, n_b = ra["power"]["samples_in_window"], rb["power"]["samples_in_window"]
    assert n_a > 20 and n_b > 20
    tol = _agreement_tolerance(n_a, n_b)
    expected = IDLE_W + DYNAMIC_W * UTILISATION
    print(f"\naverage power: {power['a']:.4f} W vs {power['b']:.4f} W, difference {power['delta']:+.4f} W "
          f"({power['rel_change_pct']:+.4f} %), tolerance +-{tol:.4f} W from noise_w {NOISE_W} W and {n_a}/{n_b} samples")
    assert abs(power["delta"]) <= tol
    for value, n in ((power["a"], n_a), (power["b"], n_b)):
        assert abs(value - expected) <= 5 * NOISE_W / math.sqrt(n)  # both measure the recorded model
    assert power["rel_change_pct"] == pytest.approx((power["b"] - power["a"]) / power["a"] * 100)
    assert figs["metric"]["a"] == power["a"] and figs["metric"]["b"] == power["b"]

    idle = figs["idle_baseline"]
    m_a, m_b = ra["idle_baseline"]["samples"], rb["idle_baseline"]["samples"]
    itol = _agreement_tolerance(m_a, m_b)
    print(f"idle baseline: {idle['a']:.4f} W vs {idle['b']:.4f} W, difference {idle['delta']:+.4f} W, tolerance +-{itol:.4f} W ({m_a}/{m_b} samples)")
    assert abs(idle["delta"]) <= itol
    assert all(c["b"] == "pass" for c in cmp["checks"] if c["a"] == "pass")
    assert not [e for e in cmp["environment"] if e["severity"] != INFO]


def _reseal(root: Path) -> None:
    for name in ("bagit.txt", "bag-info.txt", "manifest-sha256.txt", "tagmanifest-sha256.txt"):
        (root / name).unlink(missing_ok=True)
    seal(root)


def test_a_changed_serial_or_version_is_a_warning_recorded_in_the_rerun(original, tmp_path):
    d, first = original
    edited = tmp_path / "edited-bundle"
    shutil.copytree(first, edited)
    env_path = edited / "data" / "environment.json"
    env = json.loads(env_path.read_text())
    env["sources"][0]["identity"]["serial"] = "SIM-0999"  # another unit was on the bench then
    env["packages"]["numpy"] = "1.0.0"
    env["python"]["version"] = "3.0.1"
    env["gpu_driver"] = "470.57.02"
    env_path.write_text(json.dumps(env))
    _reseal(edited)

    out = run_cli("run", "--from", str(edited), "--quiet", "--out", str(tmp_path / "rec"), cwd=d, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "WARNING source wall: serial number (a different unit): SIM-0999 -> SIM-0001" in out.stdout
    for text in ("package numpy: 1.0.0 ->", "Python version: 3.0.1 ->", "GPU driver: 470.57.02 ->"):
        assert text in out.stdout
    rerun = _run_json(Path(out.stdout.strip().splitlines()[-1]))
    diffs = {x["key"]: x for x in rerun["rerun_of"]["differences"]}
    assert diffs["sources.wall.serial"]["severity"] == WARNING
    assert (diffs["sources.wall.serial"]["then"], diffs["sources.wall.serial"]["now"]) == ("SIM-0999", "SIM-0001")
    for key in ("packages.numpy", "python.version", "gpu_driver"):
        assert diffs[key]["severity"] == WARNING
    assert rerun["rerun_of"]["bundle"] == str(edited)


# ---------------------------------------------------------------------------------------------
# Purpose-made bundles (no run needed)


class AbsentOptions(DriverOptions):
    port: str = "usb0"


class AbsentSource(Source):
    """A meter that was on the bench when the bundle was recorded and is not any more."""

    driver = "test-absent"
    Options = AbsentOptions

    def open(self) -> None:
        raise SourceUnavailable(f"no device at {self.options.port}")

    def close(self) -> None:
        pass

    def identify(self) -> Identity:  # pragma: no cover - never opened
        return Identity(self.driver, "X")

    def capabilities(self) -> Capabilities:  # pragma: no cover
        return Capabilities()

    def read(self, timeout: float):  # pragma: no cover
        return []


BUNDLE_PROFILE = """\
name: made-bench
recordings: {rec}
sources:
  - name: wall
    driver: simulated
    sample_interval_s: 0.1
{more}workload:
  type: loadgen
  sut: sleep
  scenario: Offline
  duration_s: 1
"""


def make_bundle(root: Path, more_sources: str = "", run_extra: dict | None = None, env_sources: list | None = None, sealed: bool = True) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    (data / "profile.yaml").write_text(BUNDLE_PROFILE.format(rec=root.parent / "rec", more=more_sources), encoding="utf-8")
    run = {
        "id": "made-1",
        "profile": {"name": "made-bench", "sha256": "x"},
        "overrides": {"scenario": None, "duration_s": None},
        "scenario": "Offline",
        "duration_s": 1.0,
        "exit_status": "completed",
        "start": "2024-01-02T03:04:05.000Z",
        "workload_resolved": {"target_qps": 1234.5, "expected_latency_ms": 1.0, "measured_capacity_qps": 987.6},
    }
    run.update(run_extra or {})
    (data / "run.json").write_text(json.dumps(run), encoding="utf-8")
    env = collect(env_sources if env_sources is not None else [])
    (data / "environment.json").write_text(json.dumps(env), encoding="utf-8")
    if sealed:
        seal(root)
    return root


def _sim_entry(serial: str = "SIM-0001") -> dict:
    return {"name": "wall", "driver": "simulated", "status": "ok", "scope": "wall",
            "identity": {"driver": "simulated", "model": "Simulated meter", "serial": serial, "firmware": "0.1.0", "vendor": "labconsole", "address": "simulated://wall"}}


ABSENT_SOURCE = """\
  - name: meter
    driver: test-absent
    options:
      port: usb7
"""


@pytest.fixture
def absent_driver(monkeypatch):
    from labconsole.sources.registry import DRIVERS

    monkeypatch.setitem(DRIVERS, "test-absent", f"{__name__}:AbsentSource")


def test_a_missing_source_refuses_the_rerun_with_exit_2(tmp_path, absent_driver, capsys):
    meter = {"name": "meter", "driver": "test-absent", "status": "ok", "scope": "wall",
             "identity": {"driver": "test-absent", "model": "WT310E", "serial": "C2XX0001", "firmware": "F1.03", "vendor": "YOKOGAWA", "address": "usb7"}}
    bundle = make_bundle(tmp_path / "b", ABSENT_SOURCE, env_sources=[_sim_entry(), meter])
    code = cli.main(["run", "--from", str(bundle), "--quiet"])
    cap = capsys.readouterr()
    assert code == 2
    assert "cannot rerun" in cap.err
    assert "source meter (test-absent, WT310E s/n C2XX0001) was used then and is missing now: no device at usb7" in cap.err
    assert not (tmp_path / "rec").exists()  # nothing was recorded


def test_probe_and_check_name_the_missing_source_and_keep_the_present_one(tmp_path, absent_driver):
    meter = {"name": "meter", "driver": "test-absent", "status": "ok", "identity": {"model": "WT310E", "serial": "C2XX0001"}}
    plan = plan_rerun(make_bundle(tmp_path / "b", ABSENT_SOURCE, env_sources=[_sim_entry(), meter]))
    now = probe_bench(plan.loaded.profile)
    by_name = {s["name"]: s for s in now["sources"]}
    assert by_name["wall"]["status"] == "ok" and by_name["wall"]["identity"]["serial"] == "SIM-0001"
    assert by_name["meter"]["status"] == "unavailable" and "no device at usb7" in by_name["meter"]["error"]
    diffs = check_bench(plan, now)
    errors = [x for x in diffs if x.severity == ERROR]
    assert [x.key for x in errors] == ["sources.meter"]
    assert not [x for x in diffs if x.key.startswith("sources.wall")]


def test_a_driver_this_labconsole_lacks_is_a_clear_error(tmp_path):
    more = "  - name: gpu\n    driver: no-such-driver\n"
    bundle = make_bundle(tmp_path / "b", more, env_sources=[_sim_entry()])
    out = run_cli("run", "--from", str(bundle))
    assert out.returncode == 2
    assert "the bundle's profile no longer loads" in out.stderr
    assert f"{bundle / 'data' / 'profile.yaml'}:8: sources[1].driver: unknown driver 'no-such-driver'" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_bundle_changed_after_sealing_is_refused(tmp_path):
    bundle = make_bundle(tmp_path / "b", env_sources=[_sim_entry()])
    prof = bundle / "data" / "profile.yaml"
    prof.write_text(prof.read_text().replace("duration_s: 1", "duration_s: 5"))
    with pytest.raises(RerunError, match="changed after it was sealed"):
        plan_rerun(bundle)


def test_not_a_bundle_and_options_that_change_the_measurement_are_refused(tmp_path):
    mlperf = FIXTURES / "mlperf-results" / "v3.1__NVIDIA__Orin_TRT_MaxQ__resnet50__Offline"
    out = run_cli("run", "--from", str(mlperf))
    assert out.returncode == 2 and "not a labconsole bundle" in out.stderr
    bundle = make_bundle(tmp_path / "b", env_sources=[_sim_entry()])
    out = run_cli("run", "--from", str(bundle), "--duration", "5")
    assert out.returncode == 2 and "--duration: cannot be combined with --from" in out.stderr
    out = run_cli("run", "--remeasure")
    assert out.returncode == 2 and "only with --from" in out.stderr


def test_the_plan_takes_the_recorded_settings_over_todays_defaults(tmp_path):
    recorded_workload = {
        "type": "loadgen", "sut": "sleep", "sut_options": {}, "scenario": "Offline", "duration_s": 1.0,
        "min_query_count": None, "max_duration_s": None, "target_qps": "auto", "expected_latency_ms": "auto",
        "latency_bound_ms": 100.0, "samples_per_query": 8, "total_sample_count": 512, "performance_sample_count": 512,
        "seeds": {"qsl": 1, "sample_index": 2, "schedule": 3}, "trace": False, "timeout_s": None,
    }
    run_extra = {
        "workload": recorded_workload,
        "procedure": {"idle_s": 0.5, "ranging": True},
        "overrides": {"scenario": "SingleStream", "duration_s": 1.5},
        "scenario": "SingleStream",
        "duration_s": 1.5,
    }
    plan = plan_rerun(make_bundle(tmp_path / "b", run_extra=run_extra, env_sources=[_sim_entry()]))
    wl = plan.loaded.profile.workload
    assert (wl.seeds.qsl, wl.seeds.sample_index, wl.seeds.schedule) == (1, 2, 3)
    assert wl.total_sample_count == 512 and plan.loaded.profile.procedure.idle_s == 0.5
    notes = {n.key: n for n in plan.notes}
    assert notes["workload.seeds.qsl"].severity == INFO and notes["workload.seeds.qsl"].then == 1
    assert (plan.scenario, plan.duration_s) == ("SingleStream", 1.5)
    assert plan.resolved == {"target_qps": 1234.5, "expected_latency_ms": 1.0}
    opts = plan.run_options([], out_dir=tmp_path / "out")
    assert (opts.scenario, opts.duration_s, opts.resolved) == ("SingleStream", 1.5, plan.resolved)
    assert opts.run_info["rerun_of"]["id"] == "made-1"
    assert plan_rerun(tmp_path / "b", remeasure=True).resolved is None

    run_extra["scenario"] = "Server"  # run.json disagrees with its own profile and overrides
    with pytest.raises(RerunError, match="inconsistent"):
        plan_rerun(make_bundle(tmp_path / "c", run_extra=run_extra, env_sources=[_sim_entry()]))


# --- emulators: a rerun's bench probe starts the one the profile asks for, and stops it

EMULATOR_EVENTS: list[str] = []


class _FakeEmulator:
    def __init__(self, options: dict):
        self.serial = str(options.get("serial", "EMU-1"))
        EMULATOR_EVENTS.append(f"start {self.serial}")

    def source_options(self) -> dict:
        return {"serial": self.serial}

    def stop(self) -> None:
        EMULATOR_EVENTS.append(f"stop {self.serial}")


def start(options: dict) -> _FakeEmulator:  # the emulator-module interface
    return _FakeEmulator(options)


def test_the_bench_probe_starts_and_stops_a_profiles_emulator(tmp_path, monkeypatch):
    from labconsole.emulators.registry import EMULATORS, FOR_DRIVER

    monkeypatch.setitem(EMULATORS, "fake-sim", __name__)
    monkeypatch.setitem(FOR_DRIVER, "simulated", "fake-sim")
    EMULATOR_EVENTS.clear()
    more = "  - name: emu\n    driver: simulated\n    emulator:\n      serial: EMU-7\n"
    emu_then = dict(_sim_entry("EMU-6"), name="emu")
    emu_then["identity"] = dict(emu_then["identity"], address="simulated://emu")
    plan = plan_rerun(make_bundle(tmp_path / "b", more, env_sources=[_sim_entry(), emu_then]))
    now = probe_bench(plan.loaded.profile)
    assert EMULATOR_EVENTS == ["start EMU-7", "stop EMU-7"]
    emu = next(s for s in now["sources"] if s["name"] == "emu")
    assert emu["status"] == "ok" and emu["identity"]["serial"] == "EMU-7"
    diffs = check_bench(plan, now)
    assert [(x.key, x.severity) for x in diffs if x.key.startswith("sources.")] == [("sources.emu.serial", WARNING)]


# ---------------------------------------------------------------------------------------------
# The bench comparison itself


def _env(**changes) -> dict:
    env = {
        "host": "bench-1", "os": {"system": "Linux", "release": "6.1", "platform": "Linux-6.1", "machine": "x86_64"},
        "cpu": {"model": "EPYC", "count": 64}, "memory_bytes": 1 << 38,
        "python": {"version": "3.11.9", "implementation": "CPython", "executable": "/opt/py/bin/python"},
        "packages": {"numpy": "2.1.0", "mlcommons-loadgen": "6.0.17"}, "labconsole_git_commit": "abc", "gpu_driver": "550.54",
        "timezone": "+0000", "collected_wall_ns": 1_700_000_000 * 10**9,
        "sources": [
            {"name": "wall", "driver": "yokogawa", "status": "ok", "scope": "wall",
             "identity": {"model": "WT310E", "serial": "C2XX0001", "firmware": "F1.03", "vendor": "YOKOGAWA", "address": "TCPIP::10.0.0.5::INSTR", "extra": {}},
             "calibration": {"certificate_date": "2023-01-10", "interval_days": 365}},
            {"name": "gpu", "driver": "nvml", "status": "ok", "scope": "gpu", "identity": {"model": "H100", "serial": "1650", "firmware": "96.00"}},
        ],
    }
    for path, value in changes.items():
        d = env
        keys = path.split("__")
        for k in keys[:-1]:
            d = d[int(k)] if isinstance(d, list) else d[k]
        if isinstance(d, list):
            d[int(keys[-1])] = value
        else:
            d[keys[-1]] = value
    return env


def test_identical_benches_have_no_difference():
    assert diff_environments(_env(), _env()) == []


def test_each_kind_of_difference_gets_its_severity():
    now = _env(sources__0__identity__serial="C2XX0002", sources__0__identity__firmware="F1.05", sources__0__identity__address="TCPIP::10.0.0.6::INSTR",
               packages__numpy="2.2.0", python__version="3.11.10", gpu_driver="560.01", host="bench-2", timezone="+0100")
    diffs = {d.key: d for d in diff_environments(_env(), now)}
    assert diffs["sources.wall.serial"].severity == WARNING
    assert diffs["sources.wall.serial"].message == "source wall: serial number (a different unit): C2XX0001 -> C2XX0002"
    assert diffs["sources.wall.firmware"].severity == WARNING
    assert diffs["sources.wall.address"].severity == INFO
    for key in ("packages.numpy", "python.version", "gpu_driver", "host"):
        assert diffs[key].severity == WARNING, key
    assert diffs["timezone"].severity == INFO
    assert set(diffs) == {"sources.wall.serial", "sources.wall.firmware", "sources.wall.address", "packages.numpy", "python.version", "gpu_driver", "host", "timezone"}


def test_a_missing_source_is_an_error_for_a_rerun_and_a_warning_for_a_comparison():
    now = _env()
    now["sources"][1] = {"name": "gpu", "driver": "nvml", "status": "unavailable", "error": "NVML: driver not loaded"}
    diffs = diff_environments(_env(), now)
    assert diffs[0].severity == ERROR and diffs[0].key == "sources.gpu"
    assert diffs[0].message == "source gpu (nvml, H100 s/n 1650) was used then and is missing now: NVML: driver not loaded"
    gone = _env()
    del gone["sources"][0]
    d = diff_environments(_env(), gone, missing_source=WARNING)
    assert [(x.key, x.severity) for x in d] == [("sources.wall", WARNING)]
    assert "not in the profile" in d[0].message


def test_calibration_dates_and_an_expired_certificate_are_warnings():
    later = _env(collected_wall_ns=1_720_000_000 * 10**9)  # 2024-07: the 2023-01-10 certificate ran out 2024-01-10
    diffs = {d.key: d for d in diff_environments(_env(), later)}
    assert diffs["sources.wall.calibration_due"].severity == WARNING
    assert "expired on 2024-01-10" in diffs["sources.wall.calibration_due"].message
    recal = _env(sources__0__calibration={"certificate_date": "2024-01-05", "interval_days": 365})
    diffs = {d.key: d for d in diff_environments(_env(), recal)}
    assert diffs["sources.wall.calibration"].severity == WARNING
    assert diffs["sources.wall.calibration"].message == "source wall: calibration certificate date: 2023-01-10 -> 2024-01-05"


def test_sources_that_appear_or_come_back_are_information():
    then = _env()
    then["sources"][1] = {"name": "gpu", "driver": "nvml", "status": "unavailable", "error": "busy"}
    now = _env()
    now["sources"].append({"name": "cpu", "driver": "rapl", "status": "ok", "identity": {"model": "package-0"}})
    diffs = {d.key: d for d in diff_environments(then, now)}
    assert diffs["sources.gpu.status"].severity == INFO
    assert diffs["sources.cpu"].severity == INFO
    assert all(d.severity == INFO for d in diffs.values())


def test_a_bundle_without_an_environment_is_a_warning_not_a_crash():
    d = diff_environments({}, _env())
    assert len(d) == 1 and d[0].severity == WARNING and "no environment" in d[0].message


def test_rerun_command_is_in_the_help():
    out = run_cli("run", "--help")
    assert "--from BUNDLE" in out.stdout and "--remeasure" in out.stdout


def test_a_plan_from_an_unsealed_bundle_says_so(tmp_path):
    plan = plan_rerun(make_bundle(tmp_path / "b", env_sources=[_sim_entry()], sealed=False))
    assert any(n.key == "bundle.seal" and n.severity == WARNING for n in plan.notes)

