"""Well-formed files with the wrong JSON types inside: every reader validates what it reads.

A seeded mutation corpus, generated here: in a real bundle (recorded by `labconsole run` on the
simulated bench) and a real MLPerf result folder (published, tests/fixtures), one field of one
JSON file at a time gets a value of another JSON type. `report`, `check`, `compare` and
`export` (run in this process, through `labconsole.cli.main`), the console's replay and its
Results screen must answer with exit 0, 1 or 2, never a traceback; a refusal (2) names the file;
nothing is written into the folder read. LABCONSOLE_FUZZ_CASES widens the corpus (cases per
file; default 25).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES, run_cli
from labconsole import cli
from labconsole.bundle.reader import RunOpenError
from real_bundle import record_real_bundle

DELL = FIXTURES / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline"
CASES = int(os.environ.get("LABCONSOLE_FUZZ_CASES", "25"))
# One of each JSON type, and text carrying a terminal escape and Rich markup.
VALUES = [None, True, 7, -2.5, 1e308, "x\x1b[31m[b]red", [], {}, [1, "a", None], {"k": [1]}]

@pytest.fixture(scope="module")
def real_bundle(tmp_path_factory) -> Path:
    return record_real_bundle(tmp_path_factory.mktemp("realbundle"), run_cli)


def field_paths(obj, prefix=(), depth=0):
    """Every key path in `obj` (lists: their first element only), objects before their keys."""
    if depth > 6:
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from field_paths(v, prefix + (k,), depth + 1)
    elif isinstance(obj, list) and obj:
        yield prefix + (0,)
        yield from field_paths(obj[0], prefix + (0,), depth + 1)


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def _set(obj, path, value):
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def corpus(files: dict[str, object], seed: int) -> list[tuple[str, tuple, object]]:
    """(file, field path, new value) with the value's JSON type unlike the field's."""
    rng = random.Random(seed)
    out = []
    for rel, obj in files.items():
        paths = list(field_paths(obj))
        cases = []
        for path in paths:
            old = _get(obj, path)
            for v in VALUES:
                if type(v) is not type(old):
                    cases.append((rel, path, v))
        # every top-level field once, then a seeded sample of the rest
        top = [c for c in cases if len(c[1]) == 1]
        rng.shuffle(top)
        seen_top, first = set(), []
        for c in top:
            if c[1] not in seen_top:
                seen_top.add(c[1])
                first.append(c)
        rest = [c for c in cases if c not in first]
        out += first[: max(CASES, len(first))] + rng.sample(rest, min(CASES, len(rest)))
    return out


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def call(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def assert_clean(code: int, out: str, err: str, rel: str, what: str) -> None:
    assert code in (0, 1, 2), (what, code, err)
    assert "Traceback" not in err and "Traceback" not in out, (what, err)
    for text in (out, err):
        assert "\x1b" not in text and "\x07" not in text, (what, text[-400:])
    if code == 2:  # refused: the message names the file (or the folder, for export's own refusals)
        assert Path(rel).name in err or "already an MLPerf result folder" in err, (what, err)
        assert len(err.strip().splitlines()) == 1, (what, err)


def _mutate_and_run(record_root: Path, files: dict, reference: Path, tmp_path: Path, seed: int, label: str) -> int:
    refused = 0
    for n, (rel, path, value) in enumerate(corpus(files, seed)):
        case = tmp_path / f"{label}{n}"
        shutil.copytree(record_root, case, symlinks=True)
        obj = json.loads(json.dumps(files[rel]))
        _set(obj, path, value)
        (case / rel).write_text(json.dumps(obj))
        before = snapshot(case)
        what = f"{rel}: {'.'.join(map(str, path))} = {value!r}"
        results = [
            ("report", call("report", str(case), "--json")),
            ("report text", call("report", str(case))),
            ("check", call("check", str(case))),
            ("compare", call("compare", str(reference), str(case))),
            ("export", call("export", str(case), "--mlperf", str(tmp_path / f"out{label}{n}"))),
        ]
        for name, (code, out, err) in results:
            assert_clean(code, out, err, rel, f"{name} on {what}")
            refused += code == 2
        _replay_and_results(case, what)
        assert snapshot(case) == before, f"something was written into the folder read ({what})"
        shutil.rmtree(case)
        shutil.rmtree(tmp_path / f"out{label}{n}", ignore_errors=True)
    return refused


def _replay_and_results(case: Path, what: str) -> None:
    """The console's replay and Results screen read through the same layer: a clear error
    (RunOpenError, or ValueError with the path) or a working session, never another exception."""
    from labconsole.session.replay import ReplaySession
    from labconsole.session.results import load_results

    try:
        session = ReplaySession(case, speed=1000)
    except (RunOpenError, ValueError) as exc:
        assert str(case) in str(exc), (what, exc)
    else:
        session.start()
        session.close()
    try:
        load_results(case)
    except (RunOpenError, ValueError) as exc:
        assert str(case) in str(exc), (what, exc)


def test_wrong_json_types_in_a_real_bundle_never_traceback(real_bundle, tmp_path):
    data = real_bundle / "data"
    files = {f"data/{n}": json.loads((data / n).read_text()) for n in ("run.json", "environment.json", "calibration.json", "summary.json")}
    refused = _mutate_and_run(real_bundle, files, real_bundle, tmp_path, seed=21, label="b")
    assert refused > 0  # the corpus does reach the validation


def test_wrong_json_types_in_a_real_mlperf_folder_never_traceback(tmp_path):
    root = tmp_path / "dell"
    shutil.copytree(DELL, root)
    perf = root / "performance"
    files = {f"performance/power/{n}": json.loads((perf / "power" / n).read_text()) for n in ("client.json", "server.json")}
    refused = _mutate_and_run(root, files, DELL, tmp_path, seed=21, label="m")
    assert refused > 0


def test_a_wrong_type_is_named_by_file_and_field(real_bundle, tmp_path):
    case = tmp_path / "b"
    shutil.copytree(real_bundle, case)
    run = json.loads((case / "data" / "run.json").read_text())
    run["sources"] = 5
    (case / "data" / "run.json").write_text(json.dumps(run))
    for argv in (("report", str(case)), ("check", str(case)), ("compare", str(real_bundle), str(case)), ("export", str(case), "--mlperf", str(tmp_path / "o"))):
        code, out, err = call(*argv)
        assert code == 2, (argv, err)
        assert err.strip() == f"{case / 'data' / 'run.json'}: sources: Input should be a valid list", err


def _mutated_logs(raw: str, seed: int):
    """(key, value, text): every MLLOG line's value once given another JSON type (seeded)."""
    rng = random.Random(seed)
    lines = raw.split("\n")
    cases, seen = [], set()
    for i, line in enumerate(lines):
        if not line.startswith(":::MLLOG "):
            continue
        entry = json.loads(line[len(":::MLLOG ") :])
        if entry.get("key") in seen:
            continue
        seen.add(entry.get("key"))
        cases.append((i, entry, rng.choice([v for v in VALUES if type(v) is not type(entry.get("value"))])))
    for i, entry, v in cases:
        mutated = dict(entry, value=v)
        text = "\n".join(lines[:i] + [":::MLLOG " + json.dumps(mutated)] + lines[i + 1 :])
        yield entry["key"], v, text


@pytest.mark.parametrize("which", ["bundle", "mlperf"])
def test_wrong_value_types_in_a_loadgen_detail_log_never_traceback(real_bundle, tmp_path, which):
    if which == "bundle":
        root, rel = real_bundle, "data/testing/loadgen/mlperf_log_detail.txt"
    else:
        root, rel = DELL, "performance/run_1/mlperf_log_detail.txt"
    raw = (root / rel).read_text(encoding="utf-8")
    for n, (key, value, text) in enumerate(_mutated_logs(raw, seed=21)):
        case = tmp_path / f"{which}{n}"
        shutil.copytree(root, case, symlinks=True)
        (case / rel).write_text(text, encoding="utf-8")
        before = snapshot(case)
        what = f"{rel}: {key} = {value!r}"
        for name, argv in (("report", ("report", str(case), "--json")), ("check", ("check", str(case))), ("compare", ("compare", str(root), str(case)))):
            code, out, err = call(*argv)
            assert_clean(code, out, err, rel, f"{name} on {what}")
        assert snapshot(case) == before
        shutil.rmtree(case)
