"""The nvml driver, through the real nvidia-ml-py bindings over a fake libnvidia-ml (tests/helpers/fake_nvml.py).

Number-asserting tests run on a virtual clock shared by the driver and the fake GPUs: exact,
and never flaky on a loaded machine.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pynvml
import pytest

import fake_nvml as fk
from labconsole.samples.batch import ERROR, OK
from labconsole.sources.base import SourceError, SourceUnavailable
from labconsole.sources.nvml import NvmlOptions, NvmlSource


@pytest.fixture
def gpus(monkeypatch):
    """gpus([FakeGpu, ...], init_error=...) -> (fake lib, virtual clock)."""

    def make(devices, **kw):
        clock = kw.pop("clock", None) or fk.VirtualClock()
        lib = fk.install(monkeypatch, fk.FakeNvmlLib(devices, clock=clock, **kw))
        return lib, clock

    return make


def opened(clock, interval=0.1, **options) -> NvmlSource:
    src = NvmlSource("gpu", NvmlOptions(**options), sample_interval_s=interval)
    fk.use_virtual_clock(src, clock)
    src.open()
    return src


def run_for(src: NvmlSource, clock, lib, seconds: float):
    """Read samples for `seconds` of virtual time: [(t since the fake started, {channel: sample})]."""
    out = []
    end = lib.t() + seconds
    while lib.t() < end:
        batches = src.read(5.0)
        out.append((lib.t(), {b.channel: b.samples[0] for b in batches}))
    return out


# ---------------------------------------------------------------------------------------------
# What each number is


def test_each_gpu_is_labelled_with_how_its_power_is_read(gpus):
    lib, clock = gpus([fk.h100(0), fk.p100(1), fk.rtx4090(2)])
    src = opened(clock)
    caps = src.capabilities()
    assert caps.channels == ("gpu0", "gpu1", "gpu2")
    assert caps.power_kind == "mixed"  # one GPU has no energy counter
    assert not caps.has_energy_counter and caps.quantities == ("watts",)
    info = caps.channel_info
    assert info["gpu0"]["power_kind"] == "counter" and info["gpu0"]["method"] == "nvmlDeviceGetTotalEnergyConsumption"
    assert info["gpu0"]["units"] == "mJ"
    # Pascal: no counter ("needs Volta"), an old driver without the power fields: the usage call,
    # which is instantaneous on GA100 and older
    assert info["gpu1"]["power_kind"] == "instant" and info["gpu1"]["method"] == "nvmlDeviceGetPowerUsage"
    assert "Volta" in info["gpu1"]["not_used"]["counter"]
    assert "Not Supported" in info["gpu1"]["not_used"]["instant"]
    assert info["gpu2"]["power_kind"] == "counter"
    ident = src.identify()
    assert ident.model == "NVIDIA H100 80GB HBM3; Tesla P100-PCIE-16GB; NVIDIA GeForce RTX 4090"
    assert ident.firmware == "driver 550.54.15"
    assert ident.serial == "1652123000000,1650123456789"  # the GeForce board has none
    g = {d["gpu_index"]: d for d in ident.extra["gpus"]}
    assert g[0]["uuid"] == "GPU-5d3c1a2b-0000-4000-8000-000000000000"
    assert g[0]["architecture"] == "Hopper" and g[1]["architecture"] == "Pascal" and g[2]["architecture"] == "Ada"
    assert g[0]["pci_bus_id"] == "00000000:18:00.0"
    assert g[0]["power_limit_w"] == 700.0
    assert g[2]["serial"] == ""
    assert ident.address == "nvml:" + ",".join(d["uuid"] for d in ident.extra["gpus"])
    src.close()
    assert lib.initialised == 0  # nvmlShutdown balanced nvmlInit


def test_power_usage_means_instant_on_ga100_and_average_on_newer_ampere(gpus):
    lib, clock = gpus([fk.a100(0), fk.a10(1)])
    src = opened(clock, power="usage")
    info = src.capabilities().channel_info
    assert info["gpu0"]["power_kind"] == "instant"  # GA100
    assert info["gpu1"]["power_kind"] == "average"  # GA10x: 1 s average
    assert info["gpu1"]["averaging_window_s"] == 1.0
    assert "averaging_window_s" not in info["gpu0"]
    src.close()


def test_grace_hopper_falls_back_to_module_scope_with_a_warning(gpus):
    lib, clock = gpus([fk.gh200(0)])
    src = opened(clock, power="instant")
    info = src.capabilities().channel_info["gpu0"]
    assert info["scope"] == "module"
    assert info["method"] == "nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT, NVML_POWER_SCOPE_MODULE)"
    assert any("includes the CPU" in w for w in info["warnings"])
    assert src.capabilities().power_kind == "instant"
    src.close()


def test_an_explicit_power_choice_the_gpu_lacks_is_refused_not_replaced(gpus):
    lib, clock = gpus([fk.p100(0)])
    with pytest.raises(SourceUnavailable, match=r"GPU 0 \(Tesla P100-PCIE-16GB\) gives no power reading.*counter: the energy counter needs Volta"):
        opened(clock, power="counter")
    assert lib.initialised == 0


# ---------------------------------------------------------------------------------------------
# The numbers


def test_counter_watts_and_energy_follow_the_true_power(gpus):
    gpu = fk.h100(0, steps=[(0.0, 300.0), (3.0, 520.0)])
    lib, clock = gpus([gpu])
    t_open = lib.t()  # the counter's first reading is made as open() begins
    src = opened(clock, interval=0.1)
    caps = src.capabilities()
    assert caps.power_kind == "counter" and caps.has_energy_counter and caps.quantities == ("watts", "energy")
    rows = run_for(src, clock, lib, 4.0)
    t = np.array([r[0] for r in rows])
    s = np.array([r[1]["gpu0"] for r in rows])
    assert (s["status"] == OK).all()
    before = s["watts"][t < 2.95]
    after = s["watts"][t > 3.1]
    # 25 ms updates polled every ~3 ms, sampled every 100 ms: each sample within 4 %
    assert np.allclose(before, 300.0, rtol=0.04) and np.allclose(after, 520.0, rtol=0.04)
    # cumulative energy is the counter's: true energy to within one counter update
    true_j = gpu.energy_j(t[-1]) - gpu.energy_j(t_open)
    assert s["energy_j"][-1] == pytest.approx(true_j, abs=0.03 * 520 + 1.0)
    assert np.all(np.diff(s["energy_j"]) >= 0)
    # and the mean of the samples is the average power over the time they cover (each sample,
    # like a meter's reading, covers the interval before its timestamp)
    window = (t > 1.5) & (t < 4.9)
    a, b = t[window][0] - 0.1, t[window][-1]
    mean_true = (gpu.energy_j(b) - gpu.energy_j(a)) / (b - a)
    assert float(s["watts"][window].mean()) == pytest.approx(mean_true, rel=0.005)
    src.close()


def test_averaged_power_lags_a_load_step_and_instant_does_not(gpus):
    lib, clock = gpus([fk.a10(0, steps=[(0.0, 100.0), (3.0, 150.0)]), fk.a10(1, steps=[(0.0, 100.0), (3.0, 150.0)])])
    avg = opened(clock, power="average", gpus=[0])
    inst = opened(clock, power="instant", gpus=[1])
    assert avg.capabilities().power_kind == "average" and inst.capabilities().power_kind == "instant"
    rows_a, rows_i = [], []
    while lib.t() < 5.5:
        rows_a.append((lib.t(), float(avg.read(5)[0].samples["watts"][0])))
        rows_i.append((lib.t(), float(inst.read(5)[0].samples["watts"][0])))
    soon_a = [w for t, w in rows_a if 3.25 < t < 3.5]
    soon_i = [w for t, w in rows_i if 3.25 < t < 3.5]
    late_a = [w for t, w in rows_a if t > 4.3]
    assert soon_i and all(abs(w - 150.0) < 1.0 for w in soon_i)  # instant: there at once
    assert soon_a and all(100.0 < w < 140.0 for w in soon_a)  # average: still catching up
    assert late_a and all(abs(w - 150.0) < 1.0 for w in late_a)  # a second later it has
    avg.close()
    inst.close()


def test_update_periods_are_measured_by_tight_polling(gpus):
    lib, clock = gpus([fk.h100(0), fk.a100(1), fk.p100(2)])  # counters at 25 ms and 100 ms; P100 power at 20 ms
    src = opened(clock, interval=0.5)
    info = src.capabilities().channel_info
    assert info["gpu0"]["update_period_s"] == pytest.approx(0.025, abs=0.002)
    assert info["gpu1"]["update_period_s"] == pytest.approx(0.100, abs=0.002)
    assert info["gpu2"]["update_period_s"] == pytest.approx(0.020, abs=0.002)
    assert info["gpu1"]["update_period"]["changes"] >= 9
    # calibration compares the slowest with the profile's interval
    assert src.capabilities().measured_update_period_s == pytest.approx(0.100, abs=0.002)
    # counters are polled several times per update of the fastest one
    assert src.poll_s == pytest.approx(0.025 / 8, rel=0.1)
    assert info["gpu0"]["poll_s"] == src.poll_s
    src.close()


def test_sampling_faster_than_the_sensor_updates_is_warned(gpus):
    lib, clock = gpus([fk.a100(0)])  # counter every 100 ms
    src = opened(clock, interval=0.02)
    warnings = src.capabilities().channel_info["gpu0"]["warnings"]
    assert any("slower than the 20 ms sample interval" in w for w in warnings)
    src.close()


def test_update_period_inference_can_be_turned_off(gpus):
    lib, clock = gpus([fk.h100(0)])
    src = opened(clock, infer_update_period=False, poll_s=0.01)
    assert src.capabilities().measured_update_period_s is None
    assert src.capabilities().channel_info["gpu0"]["update_period"] is None
    assert src.poll_s == 0.01
    assert lib.calls.count("nvmlDeviceGetTotalEnergyConsumption") <= 3
    src.close()


def test_a_driver_reload_mid_run_is_one_invalid_sample_not_a_negative_energy(gpus):
    lib, clock = gpus([fk.h100(0, reload_at_s=2.5)])
    src = opened(clock)
    rows = run_for(src, clock, lib, 2.5)
    s = np.array([r[1]["gpu0"] for r in rows])
    bad = s[s["status"] != OK]
    assert len(bad) == 1 and bad["status"][0] == ERROR and math.isnan(bad["watts"][0])
    good = s[s["status"] == OK]
    assert np.allclose(good["watts"], 300.0, rtol=0.04)
    assert np.all(np.diff(good["energy_j"]) >= 0)
    assert src.capabilities().channel_info["gpu0"]["counter"]["resets"] == 1
    src.close()


def test_a_lost_gpu_gives_invalid_samples_and_all_lost_raises(gpus):
    lib, clock = gpus([fk.h100(0, lost_after_s=2.0), fk.h100(1, lost_after_s=3.0)])
    src = opened(clock)
    rows = run_for(src, clock, lib, 1.5)  # to t = 2.5
    last = rows[-1][1]
    assert last["gpu0"]["status"] == ERROR and last["gpu1"]["status"] == OK
    with pytest.raises(SourceError, match=r"no GPU could be read.*GPU 0: GPU is lost.*GPU 1: GPU is lost"):
        run_for(src, clock, lib, 1.0)
    src.close()


def test_reconnecting_keeps_the_cumulative_energy_and_the_measured_periods(gpus):
    lib, clock = gpus([fk.h100(0)])
    src = opened(clock)
    e1 = float(run_for(src, clock, lib, 1.0)[-1][1]["gpu0"]["energy_j"])
    src.close()
    clock.sleep(2.0)  # the recorder backs off, then reopens
    polls_before = lib.calls.count("nvmlDeviceGetTotalEnergyConsumption")
    src.open()
    assert lib.calls.count("nvmlDeviceGetTotalEnergyConsumption") - polls_before < 5  # no second inference
    w, e2 = (float(x) for x in (lambda s: (s["watts"], s["energy_j"]))(src.read(5)[0].samples[0]))
    assert e2 == pytest.approx(e1 + 300.0 * 2.1, abs=15.0)  # the gap's energy is counted, from the counter
    assert w == pytest.approx(300.0, rel=0.04)
    src.close()


# ---------------------------------------------------------------------------------------------
# Choosing GPUs


def test_gpus_are_chosen_by_index_or_uuid(gpus):
    lib, clock = gpus([fk.h100(0), fk.h100(1), fk.h100(2)])
    src = opened(clock, gpus=["GPU-5D3C1A2B-0000-4000-8000-000000000002", 0], infer_update_period=False)
    assert src.capabilities().channels == ("gpu2", "gpu0")
    assert src.identify().model == "2 x NVIDIA H100 80GB HBM3"
    src.close()


def test_unknown_gpus_are_named_with_what_exists(gpus):
    lib, clock = gpus([fk.h100(0), fk.a100(1)])
    with pytest.raises(SourceUnavailable, match=r"no GPU with index 4; this host has 2 \(0: NVIDIA H100 80GB HBM3, 1: NVIDIA A100-SXM4-40GB\)"):
        opened(clock, gpus=[4])
    with pytest.raises(SourceUnavailable, match=r"no GPU with UUID GPU-00000000-dead.*nvidia-smi -L"):
        opened(clock, gpus=["GPU-00000000-dead-beef"])
    with pytest.raises(SourceError, match="names GPU 1 twice"):
        opened(clock, gpus=[1, "GPU-a100a100-0000-4000-8000-000000000001"])
    assert lib.initialised == 0


def test_a_gpu_that_cannot_be_opened_stops_all_but_not_a_list_without_it(gpus):
    lib, clock = gpus([fk.h100(0), fk.h100(1, handle_error=pynvml.NVML_ERROR_NO_PERMISSION)])
    with pytest.raises(SourceUnavailable, match=r"GPU 1: no permission .*list the GPUs to measure in options.gpus"):
        opened(clock)
    with pytest.raises(SourceUnavailable, match=r"GPU 1: no permission"):
        opened(clock, gpus=[1])
    src = opened(clock, gpus=[0], infer_update_period=False)
    assert src.capabilities().channels == ("gpu0",)
    src.close()


def test_profile_options_are_checked():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        NvmlOptions(gpus=["card0"])
    with pytest.raises(ValidationError):
        NvmlOptions(power="mean")
    with pytest.raises(ValidationError):
        NvmlOptions(gpuz=[0])
    with pytest.raises(ValidationError):
        NvmlOptions(gpus=[])  # "all" is written by leaving gpus out
    assert NvmlOptions(gpus=[1, "GPU-5d3c1a2b-0000-4000-8000-000000000000"]).gpus == [1, "GPU-5d3c1a2b-0000-4000-8000-000000000000"]


# ---------------------------------------------------------------------------------------------
# When there is nothing to read


@pytest.mark.parametrize(
    "code, expected",
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, r"no NVIDIA driver on this host \(NVML's libnvidia-ml.so.1 could not be loaded\)"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, r"NVIDIA kernel driver is not loaded"),
        (pynvml.NVML_ERROR_NO_PERMISSION, r"no permission to use the GPU devices \(/dev/nvidia\*\)"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, r"different versions .*reboot"),
        (pynvml.NVML_ERROR_UNKNOWN, r"NVML error 999: Unknown Error"),
    ],
)
def test_init_failures_say_what_is_wrong(gpus, code, expected):
    lib, clock = gpus([fk.h100(0)], init_error=code)
    with pytest.raises(SourceUnavailable, match=expected):
        opened(clock)


def test_no_gpu_says_so(gpus):
    lib, clock = gpus([])
    with pytest.raises(SourceUnavailable, match="NVML found no NVIDIA GPU on this host"):
        opened(clock)
    assert lib.initialised == 0


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with pytest.raises(SourceUnavailable, match="pip install nvidia-ml-py"):
        NvmlSource("gpu").open()
    from labconsole.sources.discovery import discover_everything

    res = discover_everything({}, drivers=["nvml"])
    assert [(d.driver, d.status) for d in res.found] == [("nvml", "error")]
    assert "pip install nvidia-ml-py" in res.found[0].detail


def test_against_the_real_nvml_of_this_host():
    """No fake: on a host without a GPU the message is clear; with one, the GPU is identified."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        with pytest.raises(SourceUnavailable, match="no NVIDIA driver on this host"):
            NvmlSource("gpu", NvmlOptions(inference_s=0.2)).open()
        return
    except pynvml.NVMLError as exc:  # a driver that is there but unusable: the message names it
        with pytest.raises(SourceUnavailable, match="NVML"):
            NvmlSource("gpu", NvmlOptions(inference_s=0.2)).open()
        pytest.skip(f"NVML present but unusable here: {exc}")
    count = pynvml.nvmlDeviceGetCount()
    pynvml.nvmlShutdown()
    if count == 0:
        with pytest.raises(SourceUnavailable, match="no NVIDIA GPU"):
            NvmlSource("gpu").open()
        return
    src = NvmlSource("gpu", NvmlOptions(inference_s=0.5), sample_interval_s=0.1)
    src.open()
    try:
        ident = src.identify()
        assert ident.extra["gpus"] and all(g["uuid"].startswith("GPU-") for g in ident.extra["gpus"])
        assert src.capabilities().power_kind in ("counter", "instant", "average", "mixed")
        batches = []
        while not batches:
            batches = src.read(2.0)
        assert {b.channel for b in batches} == set(src.capabilities().channels)
    finally:
        src.close()


# ---------------------------------------------------------------------------------------------
# Discovery


def test_discover_lists_gpus_with_snippets_that_load_as_a_profile(gpus, tmp_path):
    from labconsole.profile import parse_profile_text
    import yaml

    lib, clock = gpus([fk.h100(0), fk.p100(1)])
    found = NvmlSource.discover({})
    assert [(d.driver, d.address, d.model, d.serial, d.status) for d in found] == [
        ("nvml", "GPU-5d3c1a2b-0000-4000-8000-000000000000", "NVIDIA H100 80GB HBM3", "1652123000000", "available"),
        ("nvml", "GPU-p100p100-0000-4000-8000-000000000001", "Tesla P100-PCIE-16GB", "1650123456789", "available"),
    ]
    assert "counter power from nvmlDeviceGetTotalEnergyConsumption" in found[0].detail
    assert "Hopper" in found[0].detail and "driver 550.54.15" in found[0].detail
    assert "instant power from nvmlDeviceGetPowerUsage" in found[1].detail
    assert lib.initialised == 0
    text = yaml.safe_dump({"name": "gpus", "sources": [d.profile_snippet for d in found]}, sort_keys=False)
    profile, _, _ = parse_profile_text(text.encode(), "discovered.yaml")
    assert [s.options["gpus"] for s in profile.sources] == [[found[0].address], [found[1].address]]


def test_discover_without_a_driver_is_a_note(gpus):
    from labconsole.sources.discovery import discover_everything

    gpus([fk.h100(0)], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    res = discover_everything({}, drivers=["nvml"])
    assert res.found == [] and "no NVIDIA driver" in res.notes["nvml"]


def test_discover_with_a_driver_and_no_gpu_is_a_note(gpus):
    from labconsole.sources.discovery import discover_everything

    lib, _ = gpus([])
    res = discover_everything({}, drivers=["nvml"])
    assert res.found == [] and res.notes["nvml"] == "NVML: the NVIDIA driver 550.54.15 is loaded but lists no GPU"
    assert lib.initialised == 0


def test_discover_lists_a_gpu_it_may_not_open_beside_the_others(gpus):
    gpus([fk.h100(0), fk.h100(1, handle_error=pynvml.NVML_ERROR_NO_PERMISSION)])
    found = NvmlSource.discover({})
    assert [(d.address, d.status) for d in found] == [("GPU-5d3c1a2b-0000-4000-8000-000000000000", "available"), ("nvml:1", "no-permission")]


def test_discover_reports_no_permission_as_a_find(gpus):
    gpus([fk.h100(0)], init_error=pynvml.NVML_ERROR_NO_PERMISSION)
    found = NvmlSource.discover({})
    assert [(d.status, d.address) for d in found] == [("no-permission", "nvml")]
    assert "/dev/nvidia" in found[0].detail


def test_the_hardware_check_script_runs_on_fake_gpus(gpus, tmp_path, capsys):
    """tools/nvml_check.py is for a person with a GPU; here it runs on fake ones (real clock)."""
    import importlib.util

    from conftest import ROOT

    gpus([fk.h100(0), fk.p100(1)], clock=fk.RealClock())
    spec = importlib.util.spec_from_file_location("nvml_check", ROOT / "tools" / "nvml_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out_json = tmp_path / "check.json"
    rc = mod.main(["--seconds", "2", "--interval", "0.1", "--json", str(out_json)])
    text = capsys.readouterr().out
    assert "GPU 0: NVIDIA H100 80GB HBM3  UUID GPU-5d3c1a2b-0000-4000-8000-000000000000" in text
    assert "watts: counter from nvmlDeviceGetTotalEnergyConsumption (scope gpu)" in text
    assert "watts: instant from nvmlDeviceGetPowerUsage" in text
    assert "counter" in text and "instant_field" in text and "usage" in text
    import json

    report = json.loads(out_json.read_text())
    assert report["samples"]["gpu0"]["samples"] >= 5
    assert report["identity"]["extra"]["driver_version"] == "550.54.15"
    # timing-dependent checks (samples per second on a busy host) are not asserted; the script ran to its verdict
    assert rc in (0, 1) and ("ALL CHECKS PASSED" in text or "CHECK(S) FAILED" in text)


def test_the_hardware_check_script_without_a_gpu_exits_2(gpus, capsys):
    import importlib.util

    from conftest import ROOT

    gpus([], clock=fk.RealClock())
    spec = importlib.util.spec_from_file_location("nvml_check", ROOT / "tools" / "nvml_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--seconds", "1"]) == 2
    assert "NVML found no NVIDIA GPU" in capsys.readouterr().err
