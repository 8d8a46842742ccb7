"""What the bench looked like: host, OS, Python, package versions, sources and identities.

Stored as `environment.json` in every bundle, so a later rerun can list what changed.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from labconsole import __version__

PACKAGES = (
    "labconsole",
    "mlcommons-loadgen",
    "numpy",
    "pandas",
    "pydantic",
    "pyyaml",
    "textual",
    "pyvisa",
    "pyvisa-py",
    "pyvisa-sim",
    "pyserial",
    "nvidia-ml-py",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out.get("labconsole") is None:
        out["labconsole"] = __version__ + " (not installed)"
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def gpu_driver_version() -> str | None:
    """The NVIDIA driver version through NVML, or None where there is no driver."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library or no driver: simply absent
        return None
    try:
        v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:  # noqa: BLE001
        return None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def collect(sources: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform(), "machine": platform.machine()},
        "cpu": {"model": _cpu_model(), "count": os.cpu_count()},
        "memory_bytes": _memory_bytes(),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(), "executable": sys.executable},
        "packages": package_versions(),
        "labconsole_git_commit": _git_commit(),
        "gpu_driver": gpu_driver_version(),
        "timezone": time.strftime("%z"),
        "collected_wall_ns": time.time_ns(),
        "sources": sources or [],
    }
