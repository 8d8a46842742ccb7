"""The headless core must never import Textual (only labconsole.tui may)."""

import subprocess
import sys

from conftest import ROOT

CORE_MODULES = [
    "labconsole.cli",
    "labconsole.profile",
    "labconsole.samples",
    "labconsole.recorder",
    "labconsole.mlperf.metrics",
    "labconsole.mlperf.checks.rules",
    "labconsole.events",
    "labconsole.procedure.engine",
    "labconsole.procedure.plans.inference",
    "labconsole.procedure.calibration",
    "labconsole.bundle.reader",
    "labconsole.bundle.writer",
    "labconsole.bundle.seal",
    "labconsole.workload.runner",
    "labconsole.workload.worker",
    "labconsole.sources.registry",
    "labconsole.sources.simulated",
    "labconsole.sources.replay",
    "labconsole.session.decimate",
    "labconsole.session.live",
    "labconsole.session.replay",
    "labconsole.procedure.guided",
]


def test_core_imports_without_textual():
    code = (
        "import importlib, sys\n"
        f"for m in {CORE_MODULES!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k == 'textual' or k.startswith('textual.') or k.startswith('labconsole.tui'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"core pulled in Textual: {out.stdout} {out.stderr}"


def test_cli_help_does_not_import_heavy_modules():
    code = (
        "import sys\n"
        "from labconsole import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('textual', 'pandas', 'pyvisa', 'pynvml', 'mlperf_loadgen') if m in sys.modules]\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
