"""A fake libnvidia-ml.so.1 under the real nvidia-ml-py bindings, for testing the nvml driver.

The boundary is the C library, not the Python module: `pynvml.nvmlLib` is replaced by an object
whose attributes are the C functions (`nvmlDeviceGetCount_v2`, `nvmlDeviceGetFieldValues`, ...)
taking the same ctypes arguments and returning NVML return codes. So the real pynvml code runs:
argument conversion, `NVMLError` subclasses built from the codes, field-value structs, bytes to
str. What the GPUs do follows NVIDIA's documentation and what Zeus measured:

* the energy counter (mJ since the driver loaded, Volta+) moves only at the sensor's update
  period (20-100 ms), by the energy of that period;
* NVML_FI_DEV_POWER_INSTANT is the power at the last update; NVML_FI_DEV_POWER_AVERAGE is the
  mean over the last 1 s, so it lags a load step;
* nvmlDeviceGetPowerUsage is instantaneous on GA100 and older, 1 s averaged on newer;
* power fields report per-field errors in `nvmlReturn`; Grace Hopper answers module scope only;
* pre-Volta GPUs answer NOT_SUPPORTED for the counter; GeForce boards have no serial;
* a GPU can be lost (GPU_IS_LOST) and the driver can be reloaded (the counter restarts at 0).

Time comes from a clock object, real or virtual (tests that assert numbers use a virtual clock
that only moves when the driver waits, so they are exact and never flaky).
"""

from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass, field

import pynvml

NVML_SUCCESS = pynvml.NVML_SUCCESS
E_UNINIT = pynvml.NVML_ERROR_UNINITIALIZED
E_INVALID = pynvml.NVML_ERROR_INVALID_ARGUMENT
E_NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
E_INSUFFICIENT_SIZE = pynvml.NVML_ERROR_INSUFFICIENT_SIZE
E_GPU_LOST = pynvml.NVML_ERROR_GPU_IS_LOST

FI_INSTANT = pynvml.NVML_FI_DEV_POWER_INSTANT
FI_AVERAGE = pynvml.NVML_FI_DEV_POWER_AVERAGE
SCOPE_GPU = pynvml.NVML_POWER_SCOPE_GPU
SCOPE_MODULE = pynvml.NVML_POWER_SCOPE_MODULE


class RealClock:
    def mono_ns(self) -> int:
        return time.monotonic_ns()


class VirtualClock:
    """Time that moves only when told to (or by `cost_ns` on every NVML call)."""

    def __init__(self, start_ns: int = 5_000_000_000_000, cost_ns: int = 20_000):
        self.mono = start_ns
        self.wall_offset = 1_700_000_000_000_000_000 - start_ns
        self.cost_ns = cost_ns

    def mono_ns(self) -> int:
        return self.mono

    def now(self) -> tuple[int, int]:
        return self.mono + self.wall_offset, self.mono

    def sleep(self, seconds: float) -> bool:
        self.mono += max(1, int(seconds * 1e9))
        return False

    def tick(self) -> None:
        self.mono += self.cost_ns


def use_virtual_clock(source, clock: VirtualClock) -> None:
    """Run a PollingSource on `clock`: its waits advance the clock instead of sleeping."""
    source._now = clock.now
    source._wait = clock.sleep


@dataclass
class FakeGpu:
    name: str
    uuid: str
    arch: int
    serial: str | None = "1650123456789"  # None: NOT_SUPPORTED (GeForce)
    pci_bus_id: str = "00000000:17:00.0"
    power_limit_mw: int = 400_000
    # the true power: steps (seconds since the fake started, watts)
    steps: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 300.0)])
    counter_period_s: float = 0.1
    instant_period_s: float = 0.02
    average_period_s: float = 0.1
    average_window_s: float = 1.0
    has_counter: bool = True
    fields: set[tuple[int, int]] = field(default_factory=lambda: {(FI_INSTANT, SCOPE_GPU), (FI_AVERAGE, SCOPE_GPU), (FI_INSTANT, SCOPE_MODULE), (FI_AVERAGE, SCOPE_MODULE)})
    has_usage: bool = True
    counter_at_start_mj: int = 987_654_321  # energy since the driver loaded, before the test
    noise_w: float = 0.7  # sensor noise on the power readings (deterministic per update)
    lost_after_s: float | None = None
    handle_error: int = NVML_SUCCESS  # e.g. NO_PERMISSION: a GPU this user may not open
    reload_at_s: float | None = None  # the driver reloads: the counter restarts from 0

    # -- the physics -----------------------------------------------------------------------------------
    def power_at(self, t: float) -> float:
        w = self.steps[0][1]
        for start, watts in self.steps:
            if t >= start:
                w = watts
        return w

    def energy_j(self, t: float) -> float:
        """Integral of the true power from 0 to t."""
        total = 0.0
        for k, (start, watts) in enumerate(self.steps):
            end = self.steps[k + 1][0] if k + 1 < len(self.steps) else float("inf")
            if t <= start:
                break
            total += watts * (min(t, end) - start)
        return total

    @staticmethod
    def _last_update(t: float, period: float) -> float:
        return (t // period) * period

    def counter_mj(self, t: float) -> int:
        tu = self._last_update(t, self.counter_period_s)
        if self.reload_at_s is not None and t >= self.reload_at_s:
            return int((self.energy_j(tu) - self.energy_j(self.reload_at_s)) * 1000) if tu > self.reload_at_s else 0
        return self.counter_at_start_mj + int(self.energy_j(tu) * 1000)

    def _noise(self, tu: float) -> float:
        k = int(round(tu * 1e6))
        return self.noise_w * (((k * 2654435761) % 2001) / 1000.0 - 1.0)

    def instant_mw(self, t: float) -> int:
        tu = self._last_update(t, self.instant_period_s)
        return int(round((self.power_at(tu) + self._noise(tu)) * 1000))

    def average_mw(self, t: float) -> int:
        tu = self._last_update(t, self.average_period_s)
        w = self.average_window_s
        lo = max(0.0, tu - w)
        if tu <= lo:
            return int(round(self.power_at(0.0) * 1000))
        return int(round(((self.energy_j(tu) - self.energy_j(lo)) / (tu - lo) + self._noise(tu) / 4) * 1000))

    def usage_mw(self, t: float) -> int:
        ga100_or_older = self.arch < pynvml.NVML_DEVICE_ARCH_AMPERE or (self.arch == pynvml.NVML_DEVICE_ARCH_AMPERE and ("A100" in self.name or "A30" in self.name))
        return self.instant_mw(t) if ga100_or_older else self.average_mw(t)


# Presets (names, architectures and quirks as the hardware reports them).
def h100(i: int = 0, **kw) -> FakeGpu:
    return FakeGpu("NVIDIA H100 80GB HBM3", f"GPU-5d3c1a2b-0000-4000-8000-00000000000{i}", pynvml.NVML_DEVICE_ARCH_HOPPER, serial=f"165212300{i:04d}", pci_bus_id=f"00000000:{0x18 + i:02X}:00.0", power_limit_mw=700_000, counter_period_s=0.025, **kw)


def a100(i: int = 0, **kw) -> FakeGpu:
    return FakeGpu("NVIDIA A100-SXM4-40GB", f"GPU-a100a100-0000-4000-8000-00000000000{i}", pynvml.NVML_DEVICE_ARCH_AMPERE, serial=f"132072000{i:04d}", power_limit_mw=400_000, **kw)


def a10(i: int = 0, **kw) -> FakeGpu:
    return FakeGpu("NVIDIA A10", f"GPU-a10a10a1-0000-4000-8000-00000000000{i}", pynvml.NVML_DEVICE_ARCH_AMPERE, power_limit_mw=150_000, **kw)


def gh200(i: int = 0, **kw) -> FakeGpu:
    kw.setdefault("fields", {(FI_INSTANT, SCOPE_MODULE), (FI_AVERAGE, SCOPE_MODULE)})
    return FakeGpu("NVIDIA GH200 480GB", f"GPU-9h200000-0000-4000-8000-00000000000{i}", pynvml.NVML_DEVICE_ARCH_HOPPER, power_limit_mw=900_000, **kw)


def p100(i: int = 0, **kw) -> FakeGpu:
    kw.setdefault("fields", set())  # an old driver: the power fields are unknown
    return FakeGpu("Tesla P100-PCIE-16GB", f"GPU-p100p100-0000-4000-8000-00000000000{i}", pynvml.NVML_DEVICE_ARCH_PASCAL, has_counter=False, power_limit_mw=250_000, **kw)


def rtx4090(i: int = 0, **kw) -> FakeGpu:
    return FakeGpu("NVIDIA GeForce RTX 4090", f"GPU-40904090-0000-4000-8000-00000000000{i}", pynvml.NVML_DEVICE_ARCH_ADA, serial=None, power_limit_mw=450_000, **kw)


class FakeNvmlLib:
    """Stands in for the CDLL("libnvidia-ml.so.1") object; attributes are the C entry points."""

    def __init__(self, gpus: list[FakeGpu], clock=None, init_error: int = NVML_SUCCESS, driver_version: str = "550.54.15"):
        self.gpus = gpus
        self.clock = clock or RealClock()
        self.init_error = init_error
        self.driver_version = driver_version
        self.initialised = 0
        self.calls: list[str] = []
        self.t0 = self.clock.mono_ns()
        self._handles = [ctypes.create_string_buffer(16) for _ in gpus]  # their addresses are the handles
        for name in dir(self):
            if name.startswith("nvml"):
                setattr(self, name, self._entry(name, getattr(self, name)))

    def _entry(self, name, method):
        # Plain functions, not bound methods: pynvml sets attributes on some (restype).
        def fn(*args):
            self.calls.append(name)
            if hasattr(self.clock, "tick"):
                self.clock.tick()
            return method(*args)

        fn.__name__ = name
        return fn

    # -- helpers --------------------------------------------------------------------------------------
    def t(self) -> float:
        return (self.clock.mono_ns() - self.t0) / 1e9

    def _gpu(self, handle) -> FakeGpu | int:
        if not self.initialised:
            return E_UNINIT
        addr = ctypes.cast(handle, ctypes.c_void_p).value
        for buf, gpu in zip(self._handles, self.gpus):
            if ctypes.addressof(buf) == addr:
                if gpu.lost_after_s is not None and self.t() >= gpu.lost_after_s:
                    return E_GPU_LOST
                return gpu
        return E_INVALID

    @staticmethod
    def _put_str(buf, size, text: str) -> int:
        data = text.encode()
        if len(data) + 1 > size.value:
            return E_INSUFFICIENT_SIZE
        buf.value = data
        return NVML_SUCCESS

    # -- the C API ------------------------------------------------------------------------------------------
    def nvmlInitWithFlags(self, flags):
        if self.init_error != NVML_SUCCESS:
            return self.init_error
        self.initialised += 1
        return NVML_SUCCESS

    def nvmlShutdown(self):
        if not self.initialised:
            return E_UNINIT
        self.initialised -= 1
        return NVML_SUCCESS

    def nvmlErrorString(self, result):
        return f"NVML error {result}".encode()

    def nvmlSystemGetDriverVersion(self, buf, size):
        return E_UNINIT if not self.initialised else self._put_str(buf, size, self.driver_version)

    def nvmlSystemGetNVMLVersion(self, buf, size):
        return E_UNINIT if not self.initialised else self._put_str(buf, size, "12." + self.driver_version)

    def nvmlDeviceGetCount_v2(self, count_ref):
        if not self.initialised:
            return E_UNINIT
        count_ref._obj.value = len(self.gpus)
        return NVML_SUCCESS

    def nvmlDeviceGetHandleByIndex_v2(self, index, handle_ref):
        if not self.initialised:
            return E_UNINIT
        i = index.value
        if not 0 <= i < len(self.gpus):
            return E_INVALID
        if self.gpus[i].handle_error != NVML_SUCCESS:
            return self.gpus[i].handle_error
        handle_ref._obj.contents = pynvml.struct_c_nvmlDevice_t.from_address(ctypes.addressof(self._handles[i]))
        return NVML_SUCCESS

    def nvmlDeviceGetName(self, handle, buf, size):
        g = self._gpu(handle)
        return g if isinstance(g, int) else self._put_str(buf, size, g.name)

    def nvmlDeviceGetUUID(self, handle, buf, size):
        g = self._gpu(handle)
        return g if isinstance(g, int) else self._put_str(buf, size, g.uuid)

    def nvmlDeviceGetSerial(self, handle, buf, size):
        g = self._gpu(handle)
        if isinstance(g, int):
            return g
        return E_NOT_SUPPORTED if g.serial is None else self._put_str(buf, size, g.serial)

    def nvmlDeviceGetArchitecture(self, handle, arch_ref):
        g = self._gpu(handle)
        if isinstance(g, int):
            return g
        arch_ref._obj.value = g.arch
        return NVML_SUCCESS

    def nvmlDeviceGetPciInfo_v3(self, handle, info_ref):
        g = self._gpu(handle)
        if isinstance(g, int):
            return g
        info_ref._obj.busId = g.pci_bus_id.encode()
        return NVML_SUCCESS

    def nvmlDeviceGetPowerManagementLimit(self, handle, limit_ref):
        g = self._gpu(handle)
        if isinstance(g, int):
            return g
        limit_ref._obj.value = g.power_limit_mw
        return NVML_SUCCESS

    def nvmlDeviceGetTotalEnergyConsumption(self, handle, mj_ref):
        g = self._gpu(handle)
        if isinstance(g, int):
            return g
        if not g.has_counter:
            return E_NOT_SUPPORTED
        mj_ref._obj.value = g.counter_mj(self.t())
        return NVML_SUCCESS

    def nvmlDeviceGetPowerUsage(self, handle, mw_ref):
        g = self._gpu(handle)
        if isinstance(g, int):
            return g
        if not g.has_usage:
            return E_NOT_SUPPORTED
        mw_ref._obj.value = g.usage_mw(self.t())
        return NVML_SUCCESS

    def nvmlDeviceGetFieldValues(self, handle, count, values_ref):
        g = self._gpu(handle)
        if isinstance(g, int):
            return g
        values = values_ref._obj
        now_us = time.time_ns() // 1000
        for i in range(count.value):
            v = values[i]
            v.timestamp = now_us
            v.latencyUsec = 0
            if (v.fieldId, v.scopeId) not in g.fields:
                v.nvmlReturn = E_NOT_SUPPORTED
                continue
            v.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
            v.nvmlReturn = NVML_SUCCESS
            v.value.uiVal = g.instant_mw(self.t()) if v.fieldId == FI_INSTANT else g.average_mw(self.t())
        return NVML_SUCCESS


def install(monkeypatch, lib: FakeNvmlLib) -> FakeNvmlLib:
    """Make the real pynvml talk to `lib` for the rest of the test."""
    monkeypatch.setattr(pynvml, "nvmlLib", lib)
    monkeypatch.setattr(pynvml, "_nvmlGetFunctionPointer_cache", {})
    monkeypatch.setattr(pynvml, "_nvmlLib_refcount", 0)
    return lib
