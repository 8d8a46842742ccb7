"""Several analyzers for one SUT through the real `ptd` driver over TCP, one emulated PTDaemon
per analyzer (power-dev's [analyzerN], one port each): channels, parallel phases, per-analyzer
ranges, a daemon that is down; and the shipped emu-ptd-analyzers profile end to end, exported."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from labconsole.emulators import ptd as ptd_emulator
from labconsole.emulators.registry import listen_tcp
from labconsole.mlperf.powerdev import merge_power_logs
from labconsole.samples.streams import read_sample_stream
from labconsole.sources.base import SourceError
from labconsole.sources.ptd import PtdAnalyzersSource
from labconsole.sources.registry import create_source


@pytest.fixture
def two_daemons():
    handle = ptd_emulator.start({"analyzers": 2, "utilisation": 0.5, "seed": 3, "idle_w": 100, "dynamic_w": 100})
    try:
        yield handle
    finally:
        handle.stop()


def collect(src, seconds: float) -> dict[str, list]:
    got: dict[str, list] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for b in src.read(0.3):
            got.setdefault(b.channel, []).append(b.samples)
    return got


def test_one_source_one_channel_per_analyzer(two_daemons):
    opts = two_daemons.source_options()
    assert [a["port"] for a in opts["analyzers"]] == [h.port for h in two_daemons.handles] and len({a["port"] for a in opts["analyzers"]}) == 2
    src = create_source("wall", "ptd", dict(opts, interval_ms=100), 0.1)
    assert isinstance(src, PtdAnalyzersSource)
    src.open()
    try:
        ident = src.identify()
        assert ident.serial == "EMU0001 + EMU0002" and ident.extra["analyzer_count"] == 2
        assert [a["model"] for a in ident.extra["analyzers"]] == ["YokogawaWT310E"] * 2
        assert src.capabilities().channels == ("analyzer1", "analyzer2")
        src.set_ranges(auto=True)
        src.begin_phase("ranging")
        got = collect(src, 1.5)
        assert set(got) == {"analyzer1", "analyzer2"}
        # each analyzer sees half of the SUT: 150 W at 50 % of 100 W idle + 100 W dynamic
        for ch in got:
            w = [float(x) for arr in got[ch] for x in arr["watts"][arr["status"] == 0]]  # auto-ranging: some "no data"
            assert len(w) >= 3 and 60 < sum(w) / len(w) < 90
        summary = src.end_phase("ranging")
        # both daemons were told the same mark (power-dev sends Go to every analyzer)
        marks = {p["mark"] for p in summary["analyzers"]}
        assert len(marks) == 1 and marks.pop().endswith("_ranging")
        # fixed ranges per analyzer from its own ranging maxima (volts, 1.1 x amps), as power-dev does
        collect(src, 0.3)
        state = src.set_ranges(volts=400.0, amps=9.0, auto=False)
        each = src.analyzer_ranges()
        assert all(not r["auto_v"] and not r["auto_a"] for r in each)
        assert all(r["amps"] < 9.0 and r["volts"] == 300.0 for r in each)  # its own max A (~0.35 A) x 1.1, not the 9 A asked
        assert state.amps == max(r["amps"] for r in each)
    finally:
        src.close()


def test_a_daemon_that_is_down_fails_open_and_releases_the_other(two_daemons):
    # a port nobody listens on: bind one, note it, close it
    sock = listen_tcp("127.0.0.1", 0)
    dead = sock.getsockname()[1]
    sock.close()
    first = two_daemons.source_options()["analyzers"][0]
    src = create_source("wall", "ptd", {"analyzers": [first, {"host": "127.0.0.1", "port": dead}], "connect_timeout_s": 2}, 0.25)
    with pytest.raises(SourceError, match=f"127.0.0.1:{dead}.*refused"):
        src.open()
    # the first analyzer's daemon was let go: another client gets it at once
    again = create_source("again", "ptd", dict(first), 0.25)
    again.open()
    again.close()


def test_emulate_ptd_reads_a_powerdev_config(tmp_path):
    conf = tmp_path / "server.conf"
    ports = []
    for _ in range(2):
        s = listen_tcp("127.0.0.1", 0)
        ports.append(s.getsockname()[1])
        s.close()
    conf.write_text(
        "[ptd]\nptd: ptd\nanalyzerCount: 2\n"
        f"[analyzer1]\ndeviceType: 49\ninterfaceFlag: -y\ndevicePort: C2PH1\nnetworkPort: {ports[0]}\n"
        f"[analyzer2]\ndeviceType: 77\ninterfaceFlag:\ndevicePort: /dev/ttyUSB0\nnetworkPort: {ports[1]}\nchannel: 1,2\n"
    )
    proc = subprocess.Popen([sys.executable, "-m", "labconsole", "emulate", "ptd", "--config", str(conf)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum("Establishing the listener" in ln for ln in lines) < 2:
            lines.append(proc.stdout.readline())
        for i, port in enumerate(ports, start=1):
            assert any(ln.startswith(f"[analyzer{i}] ") and f"Establishing the listener on port {port}." in ln for ln in lines)
        src = create_source("wall", "ptd", {"analyzers": [{"port": ports[0]}, {"port": ports[1]}]}, 0.25)
        src.open()
        try:
            models = [a["model"] for a in src.identify().extra["analyzers"]]
            assert models == ["YokogawaWT310E", "YokogawaWT330_multichannel"]  # each [analyzerN]'s deviceType
        finally:
            src.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def test_emu_ptd_analyzers_profile_end_to_end(tmp_path):
    text = (ROOT / "profiles" / "emu-ptd-analyzers.yaml").read_text()
    for old, new in (("utilisation: workload", "utilisation: 0.5"), ("sut: matmul", "sut: sleep"),
                     ("    size: 256\n    threads: 0\n", "    latency_ms: 2\n    concurrency: 8\n")):
        assert old in text
        text = text.replace(old, new)
    profile = tmp_path / "emu-ptd-analyzers.yaml"
    profile.write_text(text)
    out = run_cli("run", "--profile", str(profile), "--duration", "3", "--out", str(tmp_path / "rec"), "--quiet", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    bundle = Path(out.stdout.strip().splitlines()[-1])
    chk = run_cli("check", str(bundle), "--json")
    assert chk.returncode == 0, chk.stdout
    frame = read_sample_stream(bundle / "data" / "testing" / "samples-wall.csv").frame
    assert set(frame["channel"].astype(str)) == {"analyzer1", "analyzer2"}  # each analyzer's samples kept
    rep = json.loads(run_cli("report", str(bundle), "--json").stdout)
    ch = rep["power"]["channels"]
    assert rep["power"]["avg_watts"] == pytest.approx(ch["analyzer1"]["avg_watts"] + ch["analyzer2"]["avg_watts"])

    exp = run_cli("export", str(bundle), "--mlperf", str(tmp_path / "mlperf"))
    assert exp.returncode == 0, exp.stdout + exp.stderr
    run1 = tmp_path / "mlperf" / "run_1"
    texts = [(run1 / f"spl_analyzer_{i}.txt").read_text() for i in (1, 2)]
    assert (run1 / "spl.txt").read_text() == merge_power_logs(texts)
    folder = json.loads(run_cli("report", str(tmp_path / "mlperf"), "--json").stdout)
    # the merged file's mean of sums and the bundle's sum of means: the same samples, paired
    assert folder["power"]["avg_watts"] == pytest.approx(rep["power"]["avg_watts"], rel=0.01)
