"""The `nvml` source: NVIDIA GPUs through NVML (nvidia-ml-py, module `pynvml`), one channel per GPU.

What a GPU's `watts` are (its channel's `power_kind`, also in `capabilities().channel_info`):

* `counter`: from `nvmlDeviceGetTotalEnergyConsumption` (mJ since the driver loaded; Volta and
  newer). `energy_j` is that counter in joules since the source opened; `watts` are the energy
  between two observed changes of the counter over the time between them. Preferred: no
  averaging window to lag behind the load, and window energy is exact.
* `instant`: field `NVML_FI_DEV_POWER_INSTANT`, or `nvmlDeviceGetPowerUsage` on GA100 and older
  GPUs, where that call returns instantaneous power (NVIDIA's documentation).
* `average`: field `NVML_FI_DEV_POWER_AVERAGE`, or `nvmlDeviceGetPowerUsage` on Ampere (except
  GA100) and newer, where the driver averages over 1 s: the reading lags a load change by ~1 s.

Power fields are asked for at GPU scope first; on C2C superchips (Grace Hopper) only module
scope answers, which includes the CPU: the channel says `scope: module` and carries a warning.
Each sensor's real update period is measured at open by tight polling (Zeus's method) and
counters are then polled several times per update between samples.

NVML's device index is PCI bus order, which differs from CUDA's default order unless
CUDA_DEVICE_ORDER=PCI_BUS_ID; name GPUs by UUID in a profile to be sure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal

from pydantic import Field

from labconsole.samples.batch import ERROR, OK, ChannelBatch, one_sample
from labconsole.sources.base import Capabilities, Discovered, DriverOptions, Identity, SourceError, SourceUnavailable
from labconsole.sources.counters import EnergyCounter, PollingSource, UpdatePeriod, infer_update_period

GpuRef = Annotated[int, Field(ge=0, le=1023)] | Annotated[str, Field(pattern=r"^GPU-[0-9A-Za-z-]{8,80}$")]

# GA100 (A100, A800, A30) is the Ampere exception: nvmlDeviceGetPowerUsage is instantaneous there.
_GA100_NAME = re.compile(r"\b(A100|A800|A30)\b")
AVERAGING_WINDOW_S = 1.0  # nvmlDeviceGetPowerUsage on Ampere+ (NVIDIA's documentation)


class NvmlOptions(DriverOptions):
    gpus: Annotated[list[GpuRef], Field(min_length=1, max_length=64)] | None = Field(None, description="GPUs by NVML index (PCI order) or UUID ('GPU-...'); default: all")
    power: Literal["auto", "counter", "instant", "average", "usage"] = Field(
        "auto",
        description="auto: the energy counter where the GPU has one, else instant power, else averaged; "
        "counter | instant | average (NVML fields) | usage (nvmlDeviceGetPowerUsage) insist on one",
    )
    infer_update_period: bool = Field(True, description="measure each sensor's real update period at open (tight polling)")
    inference_s: float = Field(1.0, ge=0.05, le=30, description="how long to poll tightly for that")
    poll_s: float | None = Field(None, gt=0, le=10, description="how often counters are read between samples (default: from the update period)")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _import_pynvml():
    try:
        import pynvml
    except ImportError as exc:
        raise SourceUnavailable("the nvidia-ml-py package (module pynvml) is not installed: pip install nvidia-ml-py") from exc
    return pynvml


def _code(pynvml, name: str) -> int | None:
    return getattr(pynvml, name, None)


def explain_nvml_error(pynvml, exc: Exception, doing: str) -> str:
    """An operator's sentence for an NVML failure (what it means, what to do)."""
    value = getattr(exc, "value", None)
    codes = {n: _code(pynvml, n) for n in (
        "NVML_ERROR_LIBRARY_NOT_FOUND", "NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_NO_PERMISSION",
        "NVML_ERROR_LIB_RM_VERSION_MISMATCH", "NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_NOT_SUPPORTED",
        "NVML_ERROR_FUNCTION_NOT_FOUND", "NVML_ERROR_RESET_REQUIRED",
    )}
    if value == codes["NVML_ERROR_LIBRARY_NOT_FOUND"]:
        return (
            f"{doing}: no NVIDIA driver on this host (NVML's libnvidia-ml.so.1 could not be loaded). "
            "Install the NVIDIA driver so that `nvidia-smi` works; in a container, run it with the "
            "NVIDIA Container Toolkit (e.g. `docker run --gpus all`)"
        )
    if value == codes["NVML_ERROR_DRIVER_NOT_LOADED"]:
        return f"{doing}: the NVIDIA kernel driver is not loaded (check `nvidia-smi` and `lsmod | grep nvidia`)"
    if value == codes["NVML_ERROR_NO_PERMISSION"]:
        return f"{doing}: no permission to use the GPU devices (/dev/nvidia*): run as a user with access to them (often the 'video' group)"
    if value == codes["NVML_ERROR_LIB_RM_VERSION_MISMATCH"]:
        return f"{doing}: the NVML library and the kernel driver have different versions (driver upgraded without a reboot?): reboot or reload the nvidia module"
    if value == codes["NVML_ERROR_GPU_IS_LOST"]:
        return f"{doing}: the GPU has fallen off the bus (NVML: GPU is lost); it needs a reset or a reboot"
    if value == codes["NVML_ERROR_RESET_REQUIRED"]:
        return f"{doing}: the GPU needs a reset (NVML: GPU requires restart)"
    return f"{doing}: NVML error {value}: {exc}"


def _arch_names(pynvml) -> dict[int, str]:
    out = {}
    for attr in dir(pynvml):
        if attr.startswith("NVML_DEVICE_ARCH_") and attr not in ("NVML_DEVICE_ARCH_UNKNOWN", "NVML_DEVICE_ARCH_T"):
            value = getattr(pynvml, attr)
            if isinstance(value, int):
                out[value] = attr[len("NVML_DEVICE_ARCH_"):].capitalize()
    return out


@dataclass
class _Gpu:
    """One GPU as opened: what it is, how its power is read, and what was measured of it."""

    index: int
    handle: Any
    name: str
    uuid: str
    serial: str
    arch: int | None
    arch_name: str
    pci_bus_id: str
    power_limit_w: float | None
    channel: str = ""
    method: str = ""  # the NVML call (and field) the watts come from
    power_kind: str = ""  # counter | instant | average
    scope: str = "gpu"  # gpu | module (GPU + CPU on C2C superchips)
    units: str = ""  # mJ (counter) | mW (power)
    read_raw: Callable[[], int] | None = None
    counter: EnergyCounter | None = None
    update: UpdatePeriod | None = None
    warnings: list[str] = field(default_factory=list)
    unsupported: dict[str, str] = field(default_factory=dict)  # method -> why not
    read_errors: int = 0
    last_error: str = ""

    def info(self) -> dict[str, Any]:
        d = {
            "gpu_index": self.index,
            "name": self.name,
            "uuid": self.uuid,
            "serial": self.serial,
            "architecture": self.arch_name,
            "pci_bus_id": self.pci_bus_id,
            "power_limit_w": self.power_limit_w,
            "power_kind": self.power_kind,
            "method": self.method,
            "scope": self.scope,
            "units": self.units,
            "update_period_s": self.update.period_s if self.update else None,
            "update_period": self.update.as_dict() if self.update else None,
            "not_used": dict(self.unsupported),
            "warnings": list(self.warnings),
        }
        if self.power_kind == "average":
            d["averaging_window_s"] = AVERAGING_WINDOW_S
        if self.counter is not None:
            d["counter"] = self.counter.as_dict()
        return d


class NvmlSource(PollingSource):
    driver = "nvml"
    Options = NvmlOptions
    options: NvmlOptions

    def __init__(self, name: str, options: NvmlOptions | None = None, sample_interval_s: float = 0.1):
        super().__init__(name, options, sample_interval_s)
        self._nv = None
        self._initialised = False
        self._gpus: list[_Gpu] = []
        self._driver_version = ""
        self._nvml_version = ""
        self._counters: dict[str, EnergyCounter] = {}  # by UUID, kept across a reconnect
        self._periods: dict[str, UpdatePeriod] = {}  # by UUID: measured once

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self) -> None:
        nv = _import_pynvml()
        self._nv = nv
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            raise SourceUnavailable(explain_nvml_error(nv, exc, f"{self.name}: NVML")) from None
        self._initialised = True
        try:
            self._begin()
            self._driver_version = self._optional(nv.nvmlSystemGetDriverVersion) or ""
            self._nvml_version = self._optional(getattr(nv, "nvmlSystemGetNVMLVersion", None)) or ""
            self._gpus = [self._open_gpu(i, h) for i, h in self._selected_handles()]
            self._measure()
            self._start_ticks()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._stop_sampling()
        if self._initialised and self._nv is not None:
            self._initialised = False
            try:
                self._nv.nvmlShutdown()
            except Exception:  # noqa: BLE001 - nothing to do about a failed shutdown
                pass

    # -- opening -----------------------------------------------------------------------------------
    def _optional(self, fn, *args):
        """A value that may be unsupported on this GPU or driver: None instead of an error."""
        if fn is None:
            return None
        try:
            value = fn(*args)
        except self._nv.NVMLError:
            return None
        return _text(value) if isinstance(value, (bytes, str)) else value

    def _selected_handles(self) -> list[tuple[int, Any]]:
        nv = self._nv
        try:
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as exc:
            raise SourceUnavailable(explain_nvml_error(nv, exc, f"{self.name}: counting GPUs")) from None
        if count == 0:
            raise SourceUnavailable(f"{self.name}: NVML found no NVIDIA GPU on this host (the driver is loaded, but `nvidia-smi -L` lists nothing)")
        handles, broken = {}, {}
        for i in range(count):
            try:
                handles[i] = nv.nvmlDeviceGetHandleByIndex(i)
            except nv.NVMLError as exc:
                broken[i] = exc
        wanted = self.options.gpus
        if not wanted:
            if broken:
                # Measuring fewer GPUs than there are would under-count "all" without a word.
                i, exc = next(iter(broken.items()))
                raise SourceUnavailable(
                    explain_nvml_error(nv, exc, f"{self.name}: GPU {i}") + "; list the GPUs to measure in options.gpus to leave it out"
                ) from None
            return sorted(handles.items())
        uuids = {}
        for i, h in handles.items():
            u = self._optional(nv.nvmlDeviceGetUUID, h)
            if u:
                uuids[u.lower()] = i
        listing = ", ".join(f"{i}: {self._optional(nv.nvmlDeviceGetName, h) or '?'}" for i, h in sorted(handles.items()))
        out: list[int] = []
        for ref in wanted:
            if isinstance(ref, int):
                if ref in broken:
                    raise SourceUnavailable(explain_nvml_error(nv, broken[ref], f"{self.name}: GPU {ref}")) from None
                if ref not in handles:
                    raise SourceUnavailable(f"{self.name}: options.gpus: no GPU with index {ref}; this host has {count} ({listing})")
                idx = ref
            else:
                if ref.lower() not in uuids:
                    raise SourceUnavailable(f"{self.name}: options.gpus: no GPU with UUID {ref} on this host ({listing}; `nvidia-smi -L` shows the UUIDs)")
                idx = uuids[ref.lower()]
            if idx in out:
                raise SourceError(f"{self.name}: options.gpus names GPU {idx} twice")
            out.append(idx)
        return [(i, handles[i]) for i in out]

    def _open_gpu(self, index: int, handle: Any) -> _Gpu:
        nv = self._nv
        arch = self._optional(getattr(nv, "nvmlDeviceGetArchitecture", None), handle)
        unknown = getattr(nv, "NVML_DEVICE_ARCH_UNKNOWN", 0xFFFFFFFF)
        if arch == unknown:
            arch = None
        limit = self._optional(getattr(nv, "nvmlDeviceGetPowerManagementLimit", None), handle)
        pci = None
        try:
            pci = nv.nvmlDeviceGetPciInfo(handle)
        except Exception:  # noqa: BLE001 - identity detail only
            pass
        gpu = _Gpu(
            index=index,
            handle=handle,
            name=self._optional(nv.nvmlDeviceGetName, handle) or f"GPU {index}",
            uuid=self._optional(nv.nvmlDeviceGetUUID, handle) or f"index-{index}",
            serial=self._optional(nv.nvmlDeviceGetSerial, handle) or "",
            arch=arch,
            arch_name=_arch_names(nv).get(arch, "unknown") if arch is not None else "unknown",
            pci_bus_id=_text(getattr(pci, "busId", "")) if pci is not None else "",
            power_limit_w=limit / 1000.0 if isinstance(limit, (int, float)) else None,
            channel=f"gpu{index}",
        )
        order = ["counter", "instant", "average", "usage"] if self.options.power == "auto" else [self.options.power]
        for method in order:
            if self._try_method(gpu, method):
                break
        else:
            why = "; ".join(f"{m}: {r}" for m, r in gpu.unsupported.items())
            raise SourceUnavailable(f"{self.name}: GPU {index} ({gpu.name}) gives no power reading through NVML ({why})")
        if gpu.power_kind == "counter":
            gpu.counter = self._counters.setdefault(gpu.uuid, EnergyCounter(joules_per_unit=1e-3))
        return gpu

    def _fatal(self, exc: Exception) -> bool:
        nv = self._nv
        fatal = {_code(nv, n) for n in ("NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_UNINITIALIZED", "NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_LIB_RM_VERSION_MISMATCH", "NVML_ERROR_RESET_REQUIRED")}
        return getattr(exc, "value", None) in fatal

    def _try_method(self, gpu: _Gpu, method: str) -> bool:
        """Set `gpu` up to read power `method`'s way if the GPU supports it; else note why not."""
        nv = self._nv
        h = gpu.handle
        try:
            if method == "counter":
                volta = getattr(nv, "NVML_DEVICE_ARCH_VOLTA", 5)
                if gpu.arch is not None and gpu.arch < volta:
                    gpu.unsupported[method] = f"the energy counter needs Volta or newer ({gpu.arch_name})"
                    return False
                nv.nvmlDeviceGetTotalEnergyConsumption(h)
                gpu.read_raw = lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h)
                gpu.method, gpu.power_kind, gpu.units = "nvmlDeviceGetTotalEnergyConsumption", "counter", "mJ"
                return True
            if method in ("instant", "average"):
                fid = getattr(nv, f"NVML_FI_DEV_POWER_{method.upper()}", None)
                if fid is None:
                    gpu.unsupported[method] = f"this nvidia-ml-py has no NVML_FI_DEV_POWER_{method.upper()} (upgrade it)"
                    return False
                scopes = [("gpu", getattr(nv, "NVML_POWER_SCOPE_GPU", 0)), ("module", getattr(nv, "NVML_POWER_SCOPE_MODULE", 1))]
                reasons = []
                for scope_name, scope in scopes:
                    value = nv.nvmlDeviceGetFieldValues(h, [(fid, scope)])[0]
                    if value.nvmlReturn != nv.NVML_SUCCESS:
                        reasons.append(f"{scope_name} scope: {nv.NVMLError(value.nvmlReturn)}")
                        continue
                    gpu.read_raw = self._field_reader(h, fid, scope)
                    gpu.method = f"nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_{method.upper()}, NVML_POWER_SCOPE_{scope_name.upper()})"
                    gpu.power_kind, gpu.scope, gpu.units = method, scope_name, "mW"
                    if scope_name == "module":
                        gpu.warnings.append(
                            "GPU-only power is not supported here; module scope is used, which on C2C superchips "
                            "(Grace Hopper) includes the CPU"
                        )
                    return True
                gpu.unsupported[method] = "; ".join(reasons)
                return False
            # usage: one call, whose meaning depends on the architecture.
            nv.nvmlDeviceGetPowerUsage(h)
            ampere = getattr(nv, "NVML_DEVICE_ARCH_AMPERE", 7)
            if gpu.arch is None:
                kind = "average"
                gpu.warnings.append("architecture unknown to this nvidia-ml-py: nvmlDeviceGetPowerUsage assumed averaged over 1 s (Ampere and newer)")
            elif gpu.arch < ampere or (gpu.arch == ampere and _GA100_NAME.search(gpu.name)):
                kind = "instant"
            else:
                kind = "average"
            gpu.read_raw = lambda: nv.nvmlDeviceGetPowerUsage(h)
            gpu.method, gpu.power_kind, gpu.units = "nvmlDeviceGetPowerUsage", kind, "mW"
            return True
        except nv.NVMLError as exc:
            if self._fatal(exc):
                raise SourceUnavailable(explain_nvml_error(nv, exc, f"{self.name}: GPU {gpu.index} ({gpu.name})")) from None
            gpu.unsupported[method] = str(exc)
            return False

    def _field_reader(self, handle: Any, fid: int, scope: int) -> Callable[[], int]:
        nv = self._nv

        def read() -> int:
            value = nv.nvmlDeviceGetFieldValues(handle, [(fid, scope)])[0]
            if value.nvmlReturn != nv.NVML_SUCCESS:
                raise nv.NVMLError(value.nvmlReturn)
            return _field_number(nv, value)

        return read

    def _measure(self) -> None:
        """Zeus's method per sensor, then poll counters several times per update."""
        gpus = self._gpus
        todo = [g for g in gpus if g.uuid not in self._periods]
        if self.options.infer_update_period and todo:
            record = self.tight_poll(self.options.inference_s, lambda: [self._safe_raw(g) for g in todo])
            for k, g in enumerate(todo):
                pairs = [(t, vals[k]) for t, vals in record if vals[k] is not None]
                self._periods[g.uuid] = infer_update_period([t for t, _ in pairs], [v for _, v in pairs])
                if g.counter is not None:
                    for t, v in pairs:
                        g.counter.observe(v, t)
        for g in gpus:
            g.update = self._periods.get(g.uuid)
            if g.counter is not None:
                raw = self._safe_raw(g)
                if raw is not None:
                    g.counter.observe(raw, self._now()[1])
                g.counter.prime()
            if g.update is not None and g.update.period_s is not None and g.update.period_s > self.sample_interval_s * 1.05:
                g.warnings.append(
                    f"the sensor updates every {g.update.period_s * 1000:.0f} ms, slower than the {self.sample_interval_s * 1000:.0f} ms "
                    "sample interval: consecutive samples repeat a value"
                )
        if self.options.poll_s is not None:
            self.poll_s = self.options.poll_s
        else:
            periods = [g.update.period_s for g in gpus if g.counter is not None and g.update and g.update.period_s]
            if any(g.counter is not None for g in gpus):
                # A change is seen within ~1/8 of an update: counter watts are good to a few %.
                self.poll_s = min(self.sample_interval_s, max(0.002, min(periods) / 8 if periods else 0.0125), 0.025)
            else:
                self.poll_s = self.sample_interval_s  # power readings: nothing to track between samples

    def _safe_raw(self, gpu: _Gpu) -> int | None:
        try:
            return int(gpu.read_raw())  # type: ignore[misc]
        except self._nv.NVMLError as exc:
            gpu.read_errors += 1
            gpu.last_error = str(exc)
            return None

    # -- what it is ------------------------------------------------------------------------------------
    def identify(self) -> Identity:
        names = [g.name for g in self._gpus]
        if names and len(set(names)) == 1:
            model = names[0] if len(names) == 1 else f"{len(names)} x {names[0]}"
        else:
            model = "; ".join(names)
        return Identity(
            driver=self.driver,
            vendor="" if model.startswith("NVIDIA") else "NVIDIA",  # names mostly carry it already
            model=model,
            serial=",".join(g.serial for g in self._gpus if g.serial),
            firmware=f"driver {self._driver_version}" if self._driver_version else "",
            address="nvml:" + ",".join(g.uuid for g in self._gpus),
            extra={
                "driver_version": self._driver_version,
                "nvml_version": self._nvml_version,
                "gpus": [g.info() for g in self._gpus],
            },
        )

    def capabilities(self) -> Capabilities:
        kinds = {g.power_kind for g in self._gpus}
        counters = bool(self._gpus) and all(g.counter is not None for g in self._gpus)
        periods = [g.update.period_s for g in self._gpus if g.update and g.update.period_s]
        info = {g.channel: g.info() for g in self._gpus}
        for d in info.values():
            d["poll_s"] = self.poll_s
        return Capabilities(
            channels=tuple(g.channel for g in self._gpus),
            quantities=("watts", "energy") if counters else ("watts",),
            power_kind=kinds.pop() if len(kinds) == 1 else "mixed",
            has_energy_counter=counters,
            measured_update_period_s=max(periods) if periods else None,
            channel_info=info,
        )

    # -- data --------------------------------------------------------------------------------------------
    def _poll(self, mono_ns: int) -> None:
        for g in self._gpus:
            if g.counter is not None:
                raw = self._safe_raw(g)
                if raw is not None:
                    g.counter.observe(raw, mono_ns)

    def _emit(self, wall_ns: int, mono_ns: int) -> list[ChannelBatch]:
        out = []
        failed = []
        for g in self._gpus:
            raw = self._safe_raw(g)
            if raw is None:
                failed.append(f"GPU {g.index}: {g.last_error}")
                out.append(ChannelBatch(g.channel, one_sample(wall_ns, mono_ns, math.nan, status=ERROR)))
                continue
            if g.counter is not None:
                g.counter.observe(raw, mono_ns)
                watts, energy, status = g.counter.take_sample()
                out.append(ChannelBatch(g.channel, one_sample(wall_ns, mono_ns, watts, energy_j=energy, status=status)))
            else:
                out.append(ChannelBatch(g.channel, one_sample(wall_ns, mono_ns, raw / 1000.0, status=OK)))
        if failed and len(failed) == len(self._gpus):
            raise SourceError(f"{self.name}: no GPU could be read ({'; '.join(failed)})")
        return out

    # -- discovery ------------------------------------------------------------------------------------------
    @classmethod
    def discover(cls, hints: dict[str, Any] | None = None) -> list[Discovered]:
        import pynvml as nv  # a missing package is reported by discovery as this driver's error

        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            msg = explain_nvml_error(nv, exc, "NVML")
            if exc.value == getattr(nv, "NVML_ERROR_NO_PERMISSION", None):
                return [Discovered(driver=cls.driver, address="nvml", status="no-permission", detail=msg)]
            raise SourceUnavailable(msg) from None
        src = cls("gpus", NvmlOptions(infer_update_period=False))
        src._nv, src._initialised = nv, True
        found: list[Discovered] = []
        try:
            src._driver_version = src._optional(nv.nvmlSystemGetDriverVersion) or ""
            try:
                count = nv.nvmlDeviceGetCount()
            except nv.NVMLError as exc:
                raise SourceUnavailable(explain_nvml_error(nv, exc, "NVML: counting GPUs")) from None
            if count == 0:
                raise SourceUnavailable(f"NVML: the NVIDIA driver {src._driver_version} is loaded but lists no GPU")
            for i in range(count):
                try:
                    h = nv.nvmlDeviceGetHandleByIndex(i)
                except nv.NVMLError as exc:
                    status = "no-permission" if exc.value == getattr(nv, "NVML_ERROR_NO_PERMISSION", None) else "error"
                    found.append(Discovered(driver=cls.driver, address=f"nvml:{i}", status=status, detail=explain_nvml_error(nv, exc, f"GPU {i}")))
                    continue
                try:
                    g = src._open_gpu(i, h)
                except SourceUnavailable as exc:
                    name = src._optional(nv.nvmlDeviceGetName, h) or f"GPU {i}"
                    found.append(Discovered(driver=cls.driver, address=f"nvml:{i}", model=name, status="error", detail=str(exc)))
                    continue
                how = f"{g.power_kind} power from {g.method}"
                detail = f"GPU {i}, {g.arch_name}, PCI {g.pci_bus_id or '?'}, driver {src._driver_version or '?'}; {how}"
                if g.warnings:
                    detail += "; " + "; ".join(g.warnings)
                found.append(
                    Discovered(
                        driver=cls.driver,
                        address=g.uuid,
                        model=g.name,
                        serial=g.serial,
                        status="available",
                        detail=detail,
                        profile_snippet={
                            "name": f"gpu{i}",
                            "driver": cls.driver,
                            "scope": "gpu",
                            "sample_interval_s": 0.1,
                            "options": {"gpus": [g.uuid]},
                        },
                    )
                )
        finally:
            src.close()
        return found


def _field_number(nv, value: Any) -> int:
    """The number in a c_nvmlFieldValue_t, by its declared type (power fields: mW as uint)."""
    members = {
        getattr(nv, "NVML_VALUE_TYPE_DOUBLE", 0): "dVal",
        getattr(nv, "NVML_VALUE_TYPE_UNSIGNED_INT", 1): "uiVal",
        getattr(nv, "NVML_VALUE_TYPE_UNSIGNED_LONG", 2): "ulVal",
        getattr(nv, "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", 3): "ullVal",
        getattr(nv, "NVML_VALUE_TYPE_SIGNED_LONG_LONG", 4): "sllVal",
        getattr(nv, "NVML_VALUE_TYPE_SIGNED_INT", 5): "siVal",
        getattr(nv, "NVML_VALUE_TYPE_UNSIGNED_SHORT", 6): "usVal",
    }
    return int(getattr(value.value, members.get(value.valueType, "uiVal")))
