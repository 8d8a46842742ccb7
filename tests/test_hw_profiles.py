"""The example profiles for real GPUs and CPUs: they load, and where the hardware is missing a
run stops with a clear message (no traceback)."""

from __future__ import annotations

import os

import pytest

from conftest import ROOT, run_cli
from labconsole.profile import load_profile


def _nvml_usable() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    try:
        return pynvml.nvmlDeviceGetCount() > 0
    finally:
        pynvml.nvmlShutdown()


@pytest.mark.parametrize("name, driver", [("nvml-gpus", "nvml"), ("rapl-cpu", "rapl")])
def test_example_profile_loads(name, driver):
    loaded = load_profile(ROOT / "profiles" / f"{name}.yaml")
    assert loaded.profile.primary_source.driver == driver


@pytest.mark.parametrize(
    "name, usable, expected",
    [
        ("nvml-gpus", _nvml_usable, "source gpus (nvml) cannot be used: gpus: NVML: "),
        ("rapl-cpu", lambda: os.path.isdir("/sys/class/powercap"), "source cpu (rapl) cannot be used: cpu: "),
    ],
)
def test_example_profile_without_the_hardware_fails_clearly(tmp_path, name, usable, expected):
    if usable():
        pytest.skip("this host has the hardware; the profile would measure it")
    out = run_cli("run", "--profile", str(ROOT / "profiles" / f"{name}.yaml"), "--duration", "1", "--out", str(tmp_path), timeout=240)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "Traceback" not in text
    assert "run failed: " + expected in text


def test_option_mistakes_are_reported_with_file_and_line(tmp_path):
    from conftest import write_profile
    from labconsole.profile import ProfileError

    path = write_profile(tmp_path, """
        name: hw
        sources:
          - name: gpus
            driver: nvml
            options:
              gpus: [card0]
              power: mean
          - name: cpu
            driver: rapl
            options:
              domains: []
              rooot: /sys/class/powercap
    """)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    text = str(err.value)
    assert f"{path}:6: sources[0].options.gpus[0]" in text
    assert f"{path}:7: sources[0].options.power" in text
    assert f"{path}:11: sources[1].options.domains" in text
    assert f"{path}:12: sources[1].options.rooot: unknown key" in text
