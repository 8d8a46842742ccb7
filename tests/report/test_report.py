"""The run report (`report --html/--plot`, `compare --html/--plot`): the model built from real
recordings (a bundle recorded here, published MLPerf result folders), the HTML it renders
(escaped, self-contained), and the page as real headless Chromium shows it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, SIM_PROFILE, run_cli, write_profile
from helpers.chromium import chromium_driver, network_requests, screenshot_stats

MLPERF_V40 = FIXTURES / "mlperf-results" / "v4.0__Dell__XR8620_L4x1_MaxQ_TRT_MaxQ__resnet50__Offline"
MLPERF_V31 = FIXTURES / "mlperf-results" / "v3.1__NVIDIA__Orin_TRT_MaxQ__resnet50__Offline"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A real bundle: the simulated bench, LoadGen and the matmul SUT, calibration, ranging, testing."""
    from labconsole.procedure.engine import RunEngine
    from labconsole.procedure.plans.inference import InferencePlan
    from labconsole.profile import load_profile

    folder = tmp_path_factory.mktemp("report-bundle")
    prof = write_profile(folder, SIM_PROFILE.format(recordings=folder / "recordings", scenario="Offline", duration=2, sut="matmul",
                                                    sut_options="{size: 128, threads: 0}", idle=0.5, interval=0.05, workload_extra=""))
    out = RunEngine(load_profile(prof), InferencePlan()).run()
    assert out.exit_status == "completed", out.reason
    return out.bundle


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()}


# --- the model ------------------------------------------------------------------------------------


def test_model_of_a_bundle_has_the_metric_first_the_series_the_bands_and_every_table(bundle):
    from labconsole.bundle.reader import open_run
    from labconsole.mlperf import metrics
    from labconsole.report.model import build_report

    rep = build_report(bundle)
    expected = metrics.compute_report(open_run(bundle))
    label, value = rep.headline[0]
    assert label == "metric" and value.startswith(f"avg_power = {expected['metric']['value']:.6g} W")
    checks = next(t for t in rep.tables if t.title == "Checks")
    worst = "fail" if "fail" in checks.status else "warn" if "warn" in checks.status else "pass"
    assert rep.verdict == worst and "checks:" in rep.verdict_reason  # a completed run: its checks decide
    power, qps = rep.traces_on("power"), rep.traces_on("qps")
    assert [t.label for t in power] == ["wall"] and len(qps) == 1
    assert power[0].raw_points > 50 and np.nanmax(power[0].y) > np.nanmin(power[0].y)  # load above idle
    assert power[0].t[0] >= 0 and np.all(np.diff(power[0].t) >= 0)
    kinds = {(b.kind, b.label) for b in rep.bands}
    assert {("phase", "idle"), ("phase", "ranging"), ("phase", "testing"), ("window", "power window")} <= kinds
    window = next(b for b in rep.bands if b.kind == "window")
    testing = next(b for b in rep.bands if b.label == "testing")
    assert testing.t0 <= window.t0 < window.t1 <= testing.t1 + 1.0
    titles = [t.title for t in rep.tables]
    for wanted in ("Checks", "Sources", "Ranging vs testing", "Calibration", "Run", "Bench and environment", "Files and checksums", "Profile as used"):
        assert wanted in titles
    assert all(row[3] for row in checks.rows) and checks.status[0] in ("fail", "warn")  # reasons, the worst first
    cal = next(t for t in rep.tables if t.title == "Calibration")
    assert any(r[1] == "Idle baseline" for r in cal.rows)
    phases = next(t for t in rep.tables if t.title == "Ranging vs testing")
    assert [r[0] for r in phases.rows if r[0] in ("ranging", "testing")] == ["ranging", "testing"]
    assert "testing vs ranging" in phases.note
    files = next(t for t in rep.tables if t.title == "Files and checksums")
    row = next(r for r in files.rows if r[0] == "data/run.json")
    assert row[2] == hashlib.sha256((bundle / "data" / "run.json").read_bytes()).hexdigest()
    assert "manifest check: PASS" in files.note


def test_model_of_an_mlperf_folder_hashes_its_files_and_writes_nothing(tmp_path):
    from labconsole.report.model import build_report

    before = _tree(MLPERF_V40)
    rep = build_report(MLPERF_V40)
    assert _tree(MLPERF_V40) == before
    assert rep.kind == "mlperf" and rep.headline[0][1].startswith("avg_power = ")
    assert [t.label for t in rep.traces_on("power")] == ["ptd"] and not rep.traces_on("qps")
    assert any(b.kind == "window" for b in rep.bands)
    files = next(t for t in rep.tables if t.title == "Files and checksums")
    spl = next(r for r in files.rows if r[0].endswith("run_1/spl.txt"))
    assert spl[2] == hashlib.sha256((MLPERF_V40 / "performance" / "run_1" / "spl.txt").read_bytes()).hexdigest()
    env = next(t for t in rep.tables if t.title == "Bench and environment")
    assert ["sources[ptd].identity.vendor", "YOKOGAWA"] in env.rows, env.rows[:10]  # what its PTD log says the meter is


def test_decimation_keeps_a_one_sample_spike_and_bounds_the_points():
    from labconsole.report.model import MAX_POINTS, decimate

    t = np.arange(1_000_000) / 1000.0
    y = np.full(len(t), 100.0)
    y[654_321] = 700.0
    y[10_000:10_500] = np.nan  # a gap
    tt, yy = decimate(t, y)
    assert len(tt) <= MAX_POINTS and np.nanmax(yy) == 700.0 and np.nanmin(yy) == 100.0
    small_t, small_y = decimate(t[:100], y[:100])
    assert len(small_t) == 100


# --- the HTML -----------------------------------------------------------------------------------------


def test_html_escapes_text_from_the_recording(bundle, tmp_path):
    """A profile and a source name are the operator's text: they reach the page as text only."""
    from labconsole.report.html import render_report
    from labconsole.report.model import build_report

    copy = tmp_path / bundle.name
    shutil.copytree(bundle, copy)
    evil = "<img src=x onerror=alert('labconsole-xss')>"
    run = json.loads((copy / "data" / "run.json").read_text())
    for s in run["sources"]:
        s["name"] = evil
    (copy / "data" / "run.json").write_text(json.dumps(run))
    (copy / "data" / "profile.yaml").write_text(f"name: {evil}\n</pre><script>alert('labconsole-xss')</script>\n")
    page = render_report(build_report(copy))
    assert "labconsole-xss" in page
    assert "<img src=x onerror" not in page and "<script>alert('labconsole-xss')" not in page
    assert "&lt;img src=x onerror=alert(&#x27;labconsole-xss&#x27;)&gt;" in page
    assert "Content-Security-Policy" in page and "connect-src &#x27;none&#x27;" in page


def test_report_and_compare_commands_write_html_and_plots(bundle, tmp_path):
    from PIL import Image

    out = run_cli("report", str(bundle), "--html", str(tmp_path / "r.html"), "--plot", str(tmp_path / "r.png"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(tmp_path / "r.html"), str(tmp_path / "r.png")]
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Plotly.newPlot" in page and "<script src=" not in page
    with Image.open(tmp_path / "r.png") as img:
        assert img.size[0] > 800 and len(img.convert("RGB").getcolors(1 << 20)) > 50
    out = run_cli("report", str(MLPERF_V40), "--plot", str(tmp_path / "m.svg"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "m.svg").read_text().lstrip().startswith("<?xml") and "<svg" in (tmp_path / "m.svg").read_text()
    out = run_cli("compare", str(bundle), str(MLPERF_V40), "--html", str(tmp_path / "c.html"), "--plot", str(tmp_path / "c.png"))
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "c.html").read_text()
    assert "A: wall" in page and "B: ptd" in page and 'id="figures"' in page


def test_report_refuses_bad_outputs_with_exit_2(bundle, tmp_path):
    out = run_cli("report", str(bundle), "--plot", str(tmp_path / "p.pdf"))
    assert out.returncode == 2 and ".png or .svg" in out.stderr
    out = run_cli("report", str(bundle), "--html", str(bundle / "data" / "report.html"))
    assert out.returncode == 2 and "never written into a recording" in out.stderr
    assert not (bundle / "data" / "report.html").exists()
    out = run_cli("report", str(tmp_path / "nothing-here"), "--html", str(tmp_path / "x.html"))
    assert out.returncode == 2 and "no such file" in out.stderr


# --- in a real browser ------------------------------------------------------------------------------


def _open_offline(drv, page: Path) -> list[str]:
    """Open a report from disk; the requests the page made (its own file aside)."""
    drv.get("about:blank")
    network_requests(drv)  # what the browser did before the page is not the page's
    url = page.resolve().as_uri()
    drv.get(url)
    drv.execute_async_script("const done = arguments[arguments.length - 1]; setTimeout(done, 1500);")
    return [u for u in network_requests(drv) if u != url]


@pytest.mark.parametrize("which", ["bundle", "mlperf-v4.0", "mlperf-v3.1", "compare"])
def test_html_report_renders_in_headless_chromium_without_any_request(which, bundle, tmp_path):
    from selenium.webdriver.common.by import By

    from labconsole.report.export import write_compare_report, write_run_report

    out = tmp_path / "report.html"
    if which == "compare":
        write_compare_report(bundle, MLPERF_V40, out)
    else:
        write_run_report({"bundle": bundle, "mlperf-v4.0": MLPERF_V40, "mlperf-v3.1": MLPERF_V31}[which], out)
    with chromium_driver() as drv:
        others = _open_offline(drv, out)
        assert others == [], f"the report made requests: {others}"
        assert drv.title.startswith("labconsole ")
        assert drv.find_elements(By.CSS_SELECTOR, "#plots .main-svg"), "no plot drawn"
        # a trace broken by gaps (between phases) is drawn as several paths, some only a few points
        # long: what each of the first two traces draws is the sum of its paths
        traces = drv.find_elements(By.CSS_SELECTOR, "#plots .scatterlayer .trace")
        drawn = [sum(len(el.get_attribute("d") or "") for el in t.find_elements(By.CSS_SELECTOR, "path.js-line"))
                 for t in traces]
        assert drawn and all(n > 50 for n in drawn[:2]), f"plot traces are empty: {drawn}"
        shapes = drv.find_elements(By.CSS_SELECTOR, "#plots .shapelayer path")
        assert len(shapes) >= 2, "phases and the power window are not marked"
        assert drv.execute_script("return document.querySelector('#plots').getBoundingClientRect().height") > 300
        if which == "compare":
            assert len(drv.find_elements(By.CSS_SELECTOR, "#figures tbody tr")) > 3
        else:
            assert drv.find_element(By.CSS_SELECTOR, "#headline tr td:nth-child(2)").text.startswith("avg_power = ")
            assert drv.find_element(By.CSS_SELECTOR, "#verdict .verdict").text in ("PASS", "WARN", "FAIL")
            rows = drv.find_elements(By.CSS_SELECTOR, "#t-checks tbody tr")
            assert len(rows) > 10 and all(r.find_elements(By.TAG_NAME, "td")[3].text for r in rows[:3])
        assert not [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"], drv.get_log("browser")
        ids = drv.execute_script("return [...document.querySelectorAll('[id]')].map(e => e.id)")
        assert len(ids) == len(set(ids)), "an id is used twice"
        colours, ink = screenshot_stats(drv)
        assert colours > 20 and ink > 10_000, "the screenshot is blank"
        # the page's Content-Security-Policy refuses any request a script might try
        tried = drv.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('http://127.0.0.1:9/leak').then(() => done('sent'), (err) => done('refused: ' + err));")
        assert tried.startswith("refused"), tried
        assert any("Content Security Policy" in e.get("message", "") for e in drv.get_log("browser"))
