"""The headless core must never import Textual (only labconsole.tui may)."""

import ast
import json
import os
import pkgutil
import subprocess
import sys

import pytest
import tomllib
from pathlib import Path

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


def deferred_imports() -> set[str]:
    """'importer -> imported' for every import statement inside a function in labconsole/."""
    found = set()
    pkg = ROOT / "labconsole"
    for path in sorted(pkg.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module if parts[-1] == "__init__" else module.rpartition(".")[0]

        def visit(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if in_function and isinstance(child, ast.Import):
                    found.update(f"{module} -> {a.name}" for a in child.names)
                elif in_function and isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:
                        up = package.split(".")[: len(package.split(".")) - child.level + 1]
                        base = ".".join(up + ([child.module] if child.module else []))
                    for a in child.names:  # `from pkg import module` names the module
                        sub = f"{base}.{a.name}"
                        is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").exists() or (ROOT / Path(*sub.split(".")) / "__init__.py").exists()
                        found.add(f"{module} -> {sub if is_module else base}")
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

        visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def test_every_deferred_import_is_listed_with_its_reason():
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["labconsole"]["deferred-imports"]
    found = deferred_imports()
    unlisted = sorted(found - set(listed))
    stale = sorted(set(listed) - found)
    assert not unlisted, f"imports inside functions with no reason in pyproject.toml [tool.labconsole.deferred-imports]: {unlisted} (import at the top of the module, or list it with why)"
    assert not stale, f"listed in [tool.labconsole.deferred-imports] but no longer deferred: {stale}"
    assert all(isinstance(why, str) and len(why) > 10 for why in listed.values())


# numpy (60 ms of imports, about an eighth of the first paint) loads after the console's first
# paint: with the first readings, plots or replay (issue 15: first paint < 0.5 s).
FIRST_PAINT_HEAVY = ("numpy", "pandas")


def test_console_imports_without_numpy():
    """What `labconsole` imports before it builds the console: the CLI, the app module (the Bench
    screen with it) and the profile it opens."""
    code = (
        "import sys\n"
        "import labconsole.cli, labconsole.tui.app\n"
        "from labconsole.profile import default_profile_path, load_profile\n"
        "load_profile(default_profile_path())\n"
        f"heavy = [m for m in {FIRST_PAINT_HEAVY!r} if m in sys.modules]\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"imported before the first paint: {out.stdout} {out.stderr}"


@pytest.mark.parametrize("new_user", [False, True], ids=["bench", "new-user-setup"])
def test_console_first_paint_without_numpy(new_user, tmp_path):
    """The console itself, headless, up to its first paint (mount, the first screen's first tick):
    numpy is not loaded yet. The Bench screen's monitor and, for a new user (no profile in
    ./profiles), the Setup screen's device search import it with the drivers in a thread: both
    wait for the first frame to start, as do the Setup screen's later steps. The cyclic collector is off from `labconsole tui`
    (cli.cmd_tui) to the first paint, then on."""
    code = (
        "import json, sys\n"
        "from labconsole.tui.app import LabConsole, start_choice\n"
        "seen = {}\n"
        "painted = LabConsole._painted\n"
        "def probe(self):\n"
        "    mon = self.bench_monitor\n"
        f"    seen.update(heavy=[m for m in {FIRST_PAINT_HEAVY!r} if m in sys.modules], screen=type(self.screen).__name__,\n"
        "                monitor_started=None if mon is None else mon.started, gc_before=gc.isenabled(),\n"
        "                threads_started=sorted(w.group for w in self.workers if w.group in ('setup-discover',)),\n"
        "                steps_built=[w.id for w in self.screen.query('.setup-step')])\n"
        "    painted(self)\n"
        "    seen.update(gc_after=gc.isenabled())\n"
        "LabConsole._painted = probe\n"
        "import argparse, gc, labconsole.cli, labconsole.tui.app as app\n"
        "def run_tui(**kw):  # run_tui's own work, the app headless (no terminal here)\n"
        "    seen.update(gc_in_run_tui=gc.isenabled())\n"
        "    loaded, setup, notice = start_choice(None)\n"
        "    return LabConsole(loaded, setup=setup, notice=notice).run(headless=True, size=(160, 48)) or 0\n"
        "app.run_tui = run_tui\n"
        "labconsole.cli.cmd_tui(argparse.Namespace(profile=None, watch=False))\n"
        "seen.update(gc_after_cmd_tui=gc.isenabled())\n"
        "print(json.dumps(seen))\n"
    )
    env = dict(os.environ, LABCONSOLE_EXIT_AFTER_FIRST_PAINT="1")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path if new_user else ROOT), env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    # `labconsole` holds the cyclic collector off until the first paint, which turns it on
    expected = {"heavy": [], "gc_in_run_tui": False, "gc_before": False, "gc_after": True, "gc_after_cmd_tui": True, "threads_started": []}
    if new_user:  # the built-in bench behind the Setup screen: no monitor until setup is left
        # and of its four steps only the first is built (the others' ~20 fields come after the paint)
        expected.update(screen="SetupScreen", monitor_started=None, steps_built=["step-sources"])
    else:
        expected.update(screen="BenchScreen", monitor_started=False, steps_built=[])
    assert seen == expected, seen
