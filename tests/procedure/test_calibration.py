"""Calibration steps: pass / warn / fail / skip / retry, with small fake sources, the simulated
source, and a real SNTP responder on loopback for the clock-offset step."""

from __future__ import annotations

import datetime as dt
import math
import threading
import time

import pytest

from labconsole.events import EventBus
from labconsole.procedure.calibration import (
    Calibration,
    CalibrationContext,
    CalibrationCertificate,
    ClockOffset,
    IdleBaseline,
    ScopeCrossCheck,
    SourceIdentity,
    UpdatePeriod,
    ZeroCheck,
    update_period,
)
from labconsole.profile import Profile
from labconsole.recorder import Recorder
from labconsole.samples.batch import ChannelBatch, now_ns, one_sample
from labconsole.sources.base import Capabilities, Identity, Source
from labconsole.sources.sntp import NtpError, parse_server, sntp_offset
from labconsole.emulators.sntp import SntpResponder
from labconsole.verdict import FAIL, PASS, SKIP, WARN

TODAY = dt.date(2026, 6, 1)


class FakeSource(Source):
    """Yields one sample every `sample_interval_s`; the value changes only every `update_s`."""

    driver = "fake"

    def __init__(self, name, interval=0.02, watts=100.0, update_s=None, model="FakeMeter", serial="F-1", firmware="1.0", power_kind="meter", zero=None, clock=None, drift_w_per_s=0.0):
        super().__init__(name, None, interval)
        self.watts, self.update_s, self.drift = watts, update_s, drift_w_per_s
        self.ident = Identity(driver="fake", vendor="ACME", model=model, serial=serial, firmware=firmware)
        self.kind = power_kind
        self.zero, self.clock = zero, clock
        self._t0 = time.monotonic()
        self._next = self._t0
        self._closed = threading.Event()

    def open(self):
        self._closed.clear()

    def close(self):
        self._closed.set()

    def identify(self):
        return self.ident

    def capabilities(self):
        return Capabilities(power_kind=self.kind)

    def zero_check(self):
        if isinstance(self.zero, Exception):
            raise self.zero
        return self.zero

    def clock_offset_s(self):
        return self.clock

    def read(self, timeout):
        wait = self._next - time.monotonic()
        if wait > timeout:
            self._closed.wait(timeout)
            return []
        if wait > 0 and self._closed.wait(wait):
            return []
        self._next += self.sample_interval_s
        elapsed = time.monotonic() - self._t0
        held = math.floor(elapsed / self.update_s) * self.update_s if self.update_s else elapsed
        w = self.watts + self.drift * held + (0.01 * math.sin(held * 7.0) if self.update_s or self.drift == 0 else 0.0)
        wall, mono = now_ns()
        return [ChannelBatch("main", one_sample(wall, mono, w))]


def make_profile(sources: list[dict], **procedure) -> Profile:
    return Profile.model_validate({"name": "t", "sources": sources, "procedure": {"idle_s": 0.6, **procedure}})


@pytest.fixture
def bench(tmp_path):
    """Factory: (Calibration, recorder) over fake sources; the recorder is stopped at teardown."""
    made = []

    def make(fakes: list[FakeSource], specs: list[dict] | None = None, steps=None, **procedure):
        specs = specs or [{"name": f.name, "driver": "simulated", "sample_interval_s": f.sample_interval_s} for f in fakes]
        profile = make_profile(specs, **procedure)
        bus = EventBus()
        for f in fakes:
            f.open()
        rec = Recorder([(f, "continue") for f in fakes], bus, fsync=False)
        rec.start()
        made.append((rec, fakes))
        ctx = CalibrationContext(
            profile=profile,
            sources={f.name: f for f in fakes},
            specs={s.name: s for s in profile.sources},
            identities={f.name: f.identify() for f in fakes},
            capabilities={f.name: f.capabilities() for f in fakes},
            recorder=rec,
            bus=bus,
            phase_dir=lambda name: (tmp_path / name),
            wait=lambda s: (time.sleep(s), True)[1],
            today=lambda: TODAY,
        )
        return Calibration(ctx, steps)

    yield make
    for rec, fakes in made:
        rec.stop()
        for f in fakes:
            f.close()


# --- identity and certificate -------------------------------------------------------------------------
def test_identity_pass_fail_warn_and_retry(bench):
    cal = bench(
        [FakeSource("wall"), FakeSource("gpu")],
        [
            {"name": "wall", "driver": "simulated", "identity": {"model": "acme  fakemeter", "serial": "F-1", "firmware": "1.0"}},
            {"name": "gpu", "driver": "simulated", "scope": "gpu"},
        ],
        steps=[SourceIdentity()],
    )
    step = cal.steps[0]
    res = cal.run_step(step)
    assert res.status == WARN and "gpu: the profile gives no identity" in res.reason  # wall matches (vendor + model)
    cal.ctx.specs["wall"] = cal.ctx.specs["wall"].model_copy(update={"identity": cal.ctx.specs["wall"].identity.model_copy(update={"serial": "F-2"})})
    res = cal.run_step(step)
    assert res.status == FAIL and "serial 'F-1', profile expects 'F-2'" in res.reason
    assert res.attempts == 2 and res.history[0]["status"] == WARN
    assert res.instructions.startswith("Check that every source")


@pytest.mark.parametrize(
    "cert,status,text",
    [
        ({"certificate_date": "2025-01-01", "interval_days": 365}, FAIL, "expired on 2026-01-01"),
        ({"certificate_date": "2025-06-20", "interval_days": 365}, WARN, "due on 2026-06-20 (19 days left)"),
        ({"certificate_date": "2026-01-01", "interval_days": 365}, PASS, "valid until 2027-01-01"),
        ({"certificate_date": "2026-07-01", "interval_days": 365}, WARN, "in the future"),
        (None, WARN, "no calibration certificate given"),
    ],
)
def test_certificate_against_its_interval(bench, cert, status, text):
    spec = {"name": "wall", "driver": "simulated"}
    if cert:
        spec["calibration"] = cert
    cal = bench([FakeSource("wall")], [spec], steps=[CalibrationCertificate()])
    res = cal.run_step(cal.steps[0])
    assert res.status == status and text in res.reason


def test_a_sensor_without_certificate_says_it_is_not_traceable(bench):
    cal = bench([FakeSource("gpu", power_kind="average")], steps=[CalibrationCertificate()])
    res = cal.run_step(cal.steps[0])
    assert res.status == WARN and "not a calibrated instrument" in res.reason


# --- clock offset ------------------------------------------------------------------------------------------
def test_sntp_client_against_a_loopback_responder():
    with SntpResponder(offset_s=1.5) as ntp:
        r = sntp_offset(ntp.server, samples=3)
    assert r.offset_s == pytest.approx(1.5, abs=0.05)
    assert 0 <= r.delay_s < 0.5 and r.stratum == 2 and r.samples == 3
    assert ntp.requests == 3


@pytest.mark.parametrize("kwargs,text", [({"silent": True}, "no reply"), ({"stratum": 0}, "kiss-o'-death"), ({"leap": 3}, "not synchronised")])
def test_sntp_refuses_unusable_servers(kwargs, text):
    with SntpResponder(**kwargs) as ntp:
        with pytest.raises(NtpError, match=text):
            sntp_offset(ntp.server, samples=2, timeout_s=0.3)


def test_parse_server():
    assert parse_server("pool.ntp.org") == ("pool.ntp.org", 123)
    assert parse_server("127.0.0.1:1234") == ("127.0.0.1", 1234)
    assert parse_server("[::1]:99") == ("::1", 99)
    assert parse_server("fe80::1") == ("fe80::1", 123)
    with pytest.raises(ValueError):
        parse_server("host:notaport")


def test_clock_offset_step_pass_and_fail_against_ntp(bench):
    with SntpResponder(offset_s=0.05) as ok, SntpResponder(offset_s=-0.6) as bad:
        cal = bench([FakeSource("wall")], steps=[ClockOffset()], ntp_server=ok.server)
        res = cal.run_step(cal.steps[0])
        assert res.status == PASS, res.reason
        assert res.measured["offsets_ms"][f"ntp {ok.server}"] == pytest.approx(50, abs=30)
        cal2 = bench([FakeSource("wall")], steps=[ClockOffset()], ntp_server=bad.server)
        res = cal2.run_step(cal2.steps[0])
        assert res.status == FAIL and "beyond 400 ms" in res.reason


def test_clock_offset_without_ntp_warns_and_a_meter_host_is_checked(bench):
    cal = bench([FakeSource("wall", clock=0.5)], steps=[ClockOffset()])
    res = cal.run_step(cal.steps[0])
    assert res.status == FAIL and "wall host vs this host: +500.0 ms" in res.reason
    assert "no NTP server named" in res.reason
    cal = bench([FakeSource("wall", clock=0.01)], steps=[ClockOffset()])
    assert cal.run_step(cal.steps[0]).status == WARN  # fine meter host, but no NTP server


def test_unreachable_ntp_server_fails_the_step(bench):
    with SntpResponder(silent=True) as ntp:
        cal = bench([FakeSource("wall")], steps=[ClockOffset()], ntp_server=ntp.server)
        res = cal.run_step(cal.steps[0])
    assert res.status == FAIL and "no reply" in res.reason


# --- zero check ---------------------------------------------------------------------------------------------------------
def test_zero_check(bench):
    cal = bench([FakeSource("a", zero={"ok": True, "message": "zero done"}), FakeSource("b")], steps=[ZeroCheck()])
    res = cal.run_step(cal.steps[0])
    assert res.status == PASS and "a: zero done" in res.reason and "b" not in res.measured["sources"]
    cal = bench([FakeSource("a", zero={"ok": False, "message": "zero level out of range"})], steps=[ZeroCheck()])
    assert cal.run_step(cal.steps[0]).status == FAIL
    cal = bench([FakeSource("a", zero=RuntimeError("no answer"))], steps=[ZeroCheck()])
    assert "no answer" in cal.run_step(cal.steps[0]).reason
    cal = bench([FakeSource("a")], steps=[ZeroCheck()])
    res = cal.run_step(cal.steps[0])
    assert res.status == SKIP and res.applicable is False


# --- idle, update period, cross-check -----------------------------------------------------------------------------------
def test_idle_baseline_stable_and_drifting(bench):
    cal = bench([FakeSource("wall")], steps=[IdleBaseline()])
    res = cal.run_step(cal.steps[0])
    assert res.status == PASS and res.measured["sources"]["wall"]["main"]["stable"] is True
    assert res.measured["primary_avg_w"] == pytest.approx(100.0, abs=0.02)
    cal = bench([FakeSource("wall", drift_w_per_s=20.0)], steps=[IdleBaseline()])
    res = cal.run_step(cal.steps[0])
    assert res.status == WARN and "unstable" in res.reason


def test_update_period_arithmetic():
    import numpy as np

    t = np.arange(0, 2.0, 0.05)
    v = np.floor(t / 0.2)  # changes every 0.2 s
    r = update_period(t, v)
    assert r["delivery_period_s"] == pytest.approx(0.05)
    assert r["update_period_s"] == pytest.approx(0.2)


def test_update_period_finds_a_sensor_slower_than_its_polling(bench):
    cal = bench([FakeSource("gpu", interval=0.02, update_s=0.1), FakeSource("wall", interval=0.02)], steps=[IdleBaseline(), UpdatePeriod()])
    cal.run_all()
    res = cal.results["update_period"]
    assert res.status == WARN and "gpu" in res.reason and "values repeat" in res.reason
    assert res.measured["window"] == "the idle baseline's samples"
    # medians, so a loaded test machine's late polls do not move them much
    assert 0.07 <= res.measured["sources"]["gpu"]["main"]["update_period_s"] <= 0.15
    assert res.measured["sources"]["wall"]["main"]["update_period_s"] <= 0.05


def test_update_period_flags_a_source_slower_than_the_profile(bench):
    f = FakeSource("wall", interval=0.05)
    cal = bench([f], [{"name": "wall", "driver": "simulated", "sample_interval_s": 0.01}], steps=[UpdatePeriod()])
    res = cal.run_step(cal.steps[0])
    assert res.status == WARN and "slower than the profile's 0.01 s" in res.reason


def test_cross_check_ratio_and_parts_exceeding_the_whole(bench):
    specs = [
        {"name": "wall", "driver": "simulated", "scope": "wall", "primary": True},
        {"name": "gpu", "driver": "simulated", "scope": "gpu"},
        {"name": "cpu", "driver": "simulated", "scope": "cpu"},
    ]
    cal = bench([FakeSource("wall", watts=100.0), FakeSource("gpu", watts=30.0), FakeSource("cpu", watts=20.0)], specs, steps=[ScopeCrossCheck()])
    res = cal.run_step(cal.steps[0])
    assert res.status == PASS and res.measured["ratio"] == pytest.approx(0.5, abs=0.01)
    cal = bench([FakeSource("wall", watts=100.0), FakeSource("gpu", watts=80.0), FakeSource("cpu", watts=40.0)], specs, steps=[ScopeCrossCheck()])
    res = cal.run_step(cal.steps[0])
    assert res.status == WARN and "exceed the whole" in res.reason and res.measured["ratio"] == pytest.approx(1.2, abs=0.01)


def test_run_all_records_steps_that_do_not_apply_and_operator_skips(bench):
    cal = bench([FakeSource("wall")])
    cal.run_all()
    d = cal.as_dict()
    keys = [s["key"] for s in d["steps"]]
    assert keys == ["identity", "certificate", "clock_offset", "zero_check", "idle_baseline", "update_period", "cross_check"]
    cross = d["steps"][-1]
    assert cross["status"] == SKIP and cross["applicable"] is False and cross["reason"].startswith("not applicable")
    assert all(s["instructions"] for s in d["steps"])
    res = cal.skip(cal.step("idle_baseline"), "the SUT cannot be left idle")
    assert res.status == SKIP and res.applicable and res.attempts == 2 and res.history[0]["status"] == PASS
    assert cal.as_dict()["steps"][4]["reason"] == "the SUT cannot be left idle"
    assert cal.pending() == []


def test_a_step_that_raises_is_a_failure_not_a_crash(bench):
    class Broken(SourceIdentity):
        def run(self, ctx):
            raise OSError("device gone")

    cal = bench([FakeSource("wall")], steps=[Broken()])
    res = cal.run_step(cal.steps[0])
    assert res.status == FAIL and "OSError: device gone" in res.reason


def test_with_the_simulated_source(bench):
    from labconsole.sources.simulated import SimulatedOptions, SimulatedSource

    sim = SimulatedSource("wall", SimulatedOptions(utilisation=0.0, noise_w=0.5, seed=1), sample_interval_s=0.05)
    cal = bench([sim], [{"name": "wall", "driver": "simulated", "sample_interval_s": 0.05, "identity": {"model": "Simulated meter", "serial": "SIM-0001"}}])
    cal.run_all()
    r = cal.results
    assert r["identity"].status == PASS
    assert r["idle_baseline"].status == PASS and r["idle_baseline"].measured["primary_avg_w"] == pytest.approx(60.0, abs=1.0)
    up = r["update_period"].measured["sources"]["wall"]["main"]
    assert up["delivery_period_s"] == pytest.approx(0.05, abs=0.01) and r["update_period"].status == PASS
