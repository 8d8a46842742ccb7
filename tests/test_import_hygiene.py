"""The headless core must never import Textual (only labconsole.tui may)."""

import pkgutil
import subprocess
import sys

from conftest import ROOT

def core_modules() -> list[str]:
    """Every module outside labconsole.tui, found by walking the package (not a hand-kept list)."""
    import labconsole

    return [
        m.name
        for m in pkgutil.walk_packages(labconsole.__path__, "labconsole.")
        if not (m.name == "labconsole.tui" or m.name.startswith("labconsole.tui.")) and m.name != "labconsole.__main__"
    ]


def test_core_imports_without_textual():
    mods = core_modules()
    assert len(mods) > 60 and "labconsole.mlperf.metrics" in mods and "labconsole.sources.ptd" in mods
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
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
