"""Every driver's options are refused by the loader when out of range (exit 2, FILE:LINE), not
at run time with a failed bundle: every number a driver accepts has a lower and an upper bound,
and the options that name something (a recording to replay) are checked when the profile loads."""

from __future__ import annotations

import types
import typing

import annotated_types as at
import pytest
from pydantic.fields import FieldInfo

from conftest import run_cli, write_profile
from labconsole.profile import ProfileError, load_profile
from labconsole.sources.registry import DRIVERS, get_driver


def _numbers(ann, meta=()):
    """(type, constraints) of each int/float member of an annotation (unions, Annotated)."""
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        return [n for a in typing.get_args(ann) for n in _numbers(a, meta)]
    if origin is typing.Annotated:
        base, *extra = typing.get_args(ann)
        flat = list(meta)
        for m in extra:
            flat += list(m.metadata) if isinstance(m, FieldInfo) else [m]
        return _numbers(base, tuple(flat))
    if ann in (int, float):
        return [(ann, meta)]
    return []


def _bounded(constraints) -> bool:
    return any(isinstance(m, (at.Ge, at.Gt)) for m in constraints) and any(isinstance(m, (at.Le, at.Lt)) for m in constraints)


def test_every_number_a_driver_accepts_is_bounded():
    unbounded = []
    for name in sorted(DRIVERS):
        cls = get_driver(name)
        for field, info in cls.Options.model_fields.items():
            for base, meta in _numbers(info.annotation):
                if not _bounded(tuple(meta) + tuple(info.metadata)):
                    unbounded.append(f"{name}.{field} ({base.__name__})")
    assert unbounded == []


SIM = """
name: b
sources:
  - name: wall
    driver: {driver}
    options:
{options}
"""


@pytest.mark.parametrize("driver,options,field", [
    ("simulated", "utilisation: 5", "sources[0].options.utilisation"),
    ("simulated", "utilisation: -0.5", "sources[0].options.utilisation"),
    ("simulated", "seed: -1", "sources[0].options.seed"),
    ("simulated", "idle_w: -60", "sources[0].options.idle_w"),
    ("replay", "path: {folder}", "sources[0].options.path"),
    ("replay", "path: {missing}", "sources[0].options.path"),
    ("replay", "path: {bundle_file}", "sources[0].options.path"),
    ("replay", "path: {fixture}\nspeed: -10", "sources[0].options.speed"),
    ("lpm01a", "port: /dev/null\nfrequency_hz: 0", "sources[0].options.frequency_hz"),
])
def test_out_of_range_options_are_refused_by_the_loader(tmp_path, driver, options, field):
    from conftest import FIXTURES

    (tmp_path / "plain").mkdir()
    (tmp_path / "afile").write_text("x")
    text = options.format(folder=tmp_path / "plain", missing=tmp_path / "missing", bundle_file=tmp_path / "afile",
                          fixture=FIXTURES / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline")
    body = SIM.format(driver=driver, options="".join(f"      {ln}\n" for ln in text.splitlines()))
    path = write_profile(tmp_path, body)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    lines = [str(i) for i in err.value.issues]
    assert any(ln.startswith(f"{path}:") and f" {field}: " in ln for ln in lines), lines


def test_a_replay_of_a_folder_that_is_no_recording_exits_2_before_any_bundle(tmp_path):
    (tmp_path / "plain").mkdir()
    path = write_profile(tmp_path, SIM.format(driver="replay", options=f"      path: {tmp_path / 'plain'}\n") + f"recordings: {tmp_path / 'rec'}\n")
    res = run_cli("run", "--profile", str(path), timeout=120)
    assert res.returncode == 2 and f"{path}:" in res.stderr and "options.path" in res.stderr, res.stderr
    assert not (tmp_path / "rec").exists()


def test_every_number_an_emulator_accepts_is_bounded():
    """A profile's `emulator:` block and `labconsole emulate` options: the same rule."""
    import inspect

    from pydantic import BaseModel

    from labconsole.emulators.registry import EMULATORS, module_for

    unbounded = []
    for name in sorted(EMULATORS):
        mod = module_for(name)
        for cls_name, cls in inspect.getmembers(mod, inspect.isclass):
            if not (issubclass(cls, BaseModel) and cls.__module__ == mod.__name__):
                continue
            for field, info in cls.model_fields.items():
                for base, meta in _numbers(info.annotation):
                    if not _bounded(tuple(meta) + tuple(info.metadata)):
                        unbounded.append(f"{name}: {cls_name}.{field} ({base.__name__})")
    assert unbounded == []
