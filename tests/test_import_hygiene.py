"""The headless core must never import Textual (only labconsole.tui may)."""

import ast
import pkgutil
import subprocess
import sys
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
