"""Property-based bad input: hostile profiles, LoadGen logs and sample streams.

Whatever the bytes, the answer is either a valid result or a clear error naming the file and
the line; never another exception, never a wrong number.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labconsole.mlperf import metrics
from labconsole.bundle.reader import open_run
from labconsole.workload.loadgen_log import LoadGenLogError, parse_detail_log
from labconsole.profile import ProfileError, parse_profile_text
from labconsole.samples.streams import CSV_HEADER, StreamFormatError, read_sample_stream
from mlperf_fakes import write_detail_log, write_samples
from test_profile import GOOD as PROFILE_GOOD

GOOD = PROFILE_GOOD.lstrip("\n") + "procedure:\n  idle_s: 1\n"  # the loader tests' profile, with a procedure

ISSUE_RE = re.compile(r"^p\.yaml:(\d+): ")

yaml_scalars = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from([".inf", "-.inf", ".nan", "null", "~", "true", "no", "''", "[]", "{}", "*x", "&a", "!!python/object:os.system", "2026-13-45", "0x1F", "1e999"]),
    st.text(min_size=0, max_size=20).map(json.dumps),
)


def assert_clean_outcome(data: bytes) -> None:
    try:
        parse_profile_text(data, "p.yaml")
    except ProfileError as exc:
        # YAML also breaks lines at a lone CR, NEL, LS and PS: splitlines() counts all of those.
        nlines = len(data.decode("utf-8", "replace").splitlines()) + 1
        assert exc.issues
        for issue in exc.issues:
            text = str(issue)
            m = ISSUE_RE.match(text)
            assert m, text
            assert 1 <= int(m.group(1)) <= nlines, text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_never_crash_the_loader(data):
    assert_clean_outcome(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=st.integers(min_value=0, max_value=GOOD.count("\n") - 1), value=yaml_scalars, mode=st.sampled_from(["replace", "insert_key", "delete", "indent"]))
def test_mutated_profiles_get_file_line_errors(line, value, mode):
    lines = GOOD.split("\n")
    target = lines[line]
    indent = target[: len(target) - len(target.lstrip())]
    if mode == "replace" and ":" in target:
        key = target.split(":", 1)[0]
        lines[line] = f"{key}: {value}"
    elif mode == "insert_key":
        lines.insert(line + 1, f"{indent}zz_unknown: {value}")
    elif mode == "delete":
        del lines[line]
    else:
        lines[line] = "   " + target
    assert_clean_outcome("\n".join(lines).encode())


# -- LoadGen detail logs ----------------------------------------------------------------------

T0 = 1_764_000_000_000_000_000
S = 1_000_000_000


@pytest.fixture(scope="module")
def base_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("fz") / "bundle"
    data = root / "data"
    data.mkdir(parents=True)
    (data / "run.json").write_text(json.dumps({"exit_status": "completed", "primary_source": "wall"}))
    write_detail_log(data / "testing" / "loadgen", "Offline", T0 + S, T0 + 5 * S, extra={"result_samples_per_second": 100.0})
    write_samples(data / "testing" / "samples-wall.csv", [T0 + i * S // 2 for i in range(13)], [100.0] * 13)
    return root


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    cut=st.integers(min_value=0, max_value=4000),
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=4000), st.integers(min_value=0, max_value=255)), max_size=4),
    crlf=st.booleans(),
    shuffle=st.randoms(use_true_random=False),
    do_shuffle=st.booleans(),
)
def test_mangled_detail_logs_give_clear_errors(base_bundle, tmp_path, cut, flips, crlf, shuffle, do_shuffle):
    src = base_bundle / "data" / "testing" / "loadgen" / "mlperf_log_detail.txt"
    raw = bytearray(src.read_bytes())
    lines = raw.split(b"\n")
    if do_shuffle:
        shuffle.shuffle(lines)
    raw = bytearray(b"\n".join(lines))
    for pos, byte in flips:
        if raw:
            raw[pos % len(raw)] = byte
    raw = raw[: max(0, len(raw) - cut % (len(raw) + 1))] if cut % 3 == 0 else raw
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    path = tmp_path / "mlperf_log_detail.txt"
    path.write_bytes(bytes(raw))
    try:
        log = parse_detail_log(path)
    except LoadGenLogError as exc:
        assert re.match(rf"^{re.escape(str(path))}(:\d+)?: ", str(exc)), str(exc)
        return
    if log.power_begin_ns is not None:
        assert log.power_end_ns >= log.power_begin_ns


def test_report_survives_every_kind_of_broken_log(base_bundle, tmp_path):
    """End to end: the report on a bundle with a broken log says what is wrong, no crash."""
    import shutil

    cases = {
        "truncated": lambda b: b[: len(b) // 2],
        "empty": lambda b: b"",
        "latin1": lambda b: b.replace(b"VALID", b"V\xe9LID"),
        "no markers": lambda b: b"\n".join(l for l in b.split(b"\n") if b"power_" not in l),
        "reordered": lambda b: b"\n".join(sorted(b.split(b"\n"), key=lambda l: b"power_end" not in l)),
        "end before begin": lambda b: b.replace(b'"power_begin", "value": "', b'"power_begin", "value": "12-31-2099 00:00:00.000" , "x": "'),
    }
    for name, mangle in cases.items():
        root = tmp_path / name.replace(" ", "_")
        shutil.copytree(base_bundle, root)
        p = root / "data" / "testing" / "loadgen" / "mlperf_log_detail.txt"
        p.write_bytes(mangle(p.read_bytes()))
        rec = open_run(root)
        rep = metrics.compute_report(rec)
        ph = rec.phases["testing"]
        if name == "no markers":
            assert rep["metric"] is None
        else:
            assert ph.detail_error and str(p) in ph.detail_error, (name, ph.detail_error)
            assert rep["metric"] is None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tail=st.binary(max_size=200), middle=st.binary(max_size=50))
def test_corrupted_sample_streams(tmp_path, tail, middle):
    path = tmp_path / "s.csv"
    good = "1000,1,main,100.5,,,,,,,,0\n2000,2,main,101.5,,,,,,,,0\n"
    path.write_bytes(CSV_HEADER.encode() + good.encode() + middle + b"\n" + tail)
    try:
        res = read_sample_stream(path)
    except StreamFormatError as exc:
        assert re.match(rf"^{re.escape(str(path))}(:\d+)?: ", str(exc)), str(exc)
        return
    # if it parsed, the good rows are there unchanged
    frame = res.frame
    assert list(frame["watts"][:2]) == [100.5, 101.5]
