"""The rapl driver against powercap trees in tmp folders, laid out as the kernel lays them out.

A `FakePowercap` writes each zone's `energy_uj` as virtual time passes (the counter steps every
1 ms, as RAPL's MSR does, and wraps at `max_energy_range_uj`); the driver reads the real files.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from labconsole.samples.batch import ERROR, OK
from labconsole.sources import rapl
from labconsole.sources.base import SourceError, SourceUnavailable
from labconsole.sources.rapl import RaplOptions, RaplSource

INTEL_RANGE_UJ = 262_143_328_850
AMD_RANGE_UJ = 65_532_610_987


class FakePowercap:
    """A /sys/class/powercap tree: zone folders under intel-rapl/, flat symlinks at the top."""

    def __init__(self, root: Path, zones: dict[str, dict], flat: bool = True, start_ns: int = 7_000_000_000_000):
        self.root = root
        self.mono = start_ns
        self.t0 = start_ns
        self.zones = zones  # zone id -> {name, watts, range, limit_w, start_uj}
        (root / "intel-rapl").mkdir(parents=True)
        (root / "intel-rapl" / "enabled").write_text("1\n")
        for zid, z in sorted(zones.items(), key=lambda kv: kv[0].count(":")):
            parts = zid.split(":")
            # nested as the kernel has it: intel-rapl/intel-rapl:0/intel-rapl:0:0
            folder = root / "intel-rapl"
            for k in range(2, len(parts) + 1):
                folder = folder / ":".join(parts[:k])
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "name").write_text(z["name"] + "\n")
            (folder / "max_energy_range_uj").write_text(f"{z.get('range', INTEL_RANGE_UJ)}\n")
            (folder / "enabled").write_text("1\n")
            if z.get("limit_w"):
                (folder / "constraint_0_name").write_text("long_term\n")
                (folder / "constraint_0_power_limit_uw").write_text(f"{int(z['limit_w'] * 1e6)}\n")
            z["folder"] = folder
            if flat:
                link = root / zid
                if not link.exists():
                    link.symlink_to(folder.relative_to(root))
        self.write()

    def t(self) -> float:
        return (self.mono - self.t0) / 1e9

    def counter_uj(self, z: dict) -> int:
        tu = (self.mono - self.t0) // 1_000_000 / 1000.0  # the MSR updates every 1 ms
        watts = z["watts"](tu) if callable(z["watts"]) else z["watts"]
        energy = z.get("start_uj", 123_456_789) + int(watts * tu * 1e6)
        return energy % z.get("range", INTEL_RANGE_UJ)

    def write(self) -> None:
        for z in self.zones.values():
            value = self.counter_uj(z)
            if z.get("frozen") or z.get("written") == value:
                continue
            (z["folder"] / "energy_uj").write_text(f"{value}\n")
            z["written"] = value

    # the driver's clock hooks
    def now(self) -> tuple[int, int]:
        return self.mono + 1_700_000_000_000_000_000, self.mono

    def wait(self, seconds: float) -> bool:
        self.mono += max(1, int(seconds * 1e9))
        self.write()
        return False


def server(tmp_path: Path, **kw) -> FakePowercap:
    """Two sockets, each with dram; core/uncore on socket 0; psys; an mmio package duplicate."""
    zones = {
        "intel-rapl:0": {"name": "package-0", "watts": 120.0, "limit_w": 205.0},
        "intel-rapl:0:0": {"name": "core", "watts": 80.0},
        "intel-rapl:0:1": {"name": "uncore", "watts": 10.0},
        "intel-rapl:0:2": {"name": "dram", "watts": 15.0, "range": 65_712_999_613},
        "intel-rapl:1": {"name": "package-1", "watts": 90.0, "limit_w": 205.0},
        "intel-rapl:1:0": {"name": "dram", "watts": 12.0, "range": 65_712_999_613},
        "intel-rapl:2": {"name": "psys", "watts": 300.0},
    }
    zones.update(kw.pop("extra", {}))
    return FakePowercap(tmp_path / "powercap", zones, **kw)


def opened(fake: FakePowercap, interval: float = 0.5, **options) -> RaplSource:
    options.setdefault("root", str(fake.root))
    options.setdefault("inference_s", 0.05)
    src = RaplSource("cpu", RaplOptions(**options), sample_interval_s=interval)
    src._now, src._wait = fake.now, fake.wait
    src.open()
    return src


def run_for(src: RaplSource, fake: FakePowercap, seconds: float):
    out = []
    end = fake.t() + seconds
    while fake.t() < end:
        batches = src.read(30.0)
        out.append((fake.t(), {b.channel: b.samples[0] for b in batches}))
    return out


@pytest.fixture
def as_a_user(monkeypatch):
    """Root reads any file: make the driver see permissions as an ordinary user would."""
    real = rapl.read_sysfs_text

    def read(path):
        if os.geteuid() == 0 and not os.stat(path).st_mode & stat.S_IROTH:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(rapl, "read_sysfs_text", read)


# ---------------------------------------------------------------------------------------------


def test_default_domains_do_not_overlap(tmp_path):
    fake = server(tmp_path)
    src = opened(fake)
    caps = src.capabilities()
    assert caps.channels == ("package-0", "package-0.dram", "package-1", "package-1.dram")
    assert caps.power_kind == "counter" and caps.has_energy_counter and caps.quantities == ("watts", "energy")
    info = caps.channel_info["package-0.dram"]
    assert info["zone"] == "intel-rapl:0:2" and info["kind"] == "dram" and info["method"] == "energy_uj"
    assert info["max_energy_range_uj"] == 65_712_999_613
    assert caps.channel_info["package-0"]["power_limit_w"] == 205.0
    assert caps.channel_info["package-0"]["wrap_time_at_limit_s"] == pytest.approx(INTEL_RANGE_UJ / 1e6 / 205.0)
    src.close()


def test_nested_layout_without_flat_links_is_found_too(tmp_path):
    fake = server(tmp_path, flat=False)
    src = opened(fake, infer_update_period=False)
    assert src.capabilities().channels == ("package-0", "package-0.dram", "package-1", "package-1.dram")
    src.close()


def test_counter_watts_and_energy(tmp_path):
    fake = server(tmp_path)
    src = opened(fake, interval=0.5)
    rows = run_for(src, fake, 5.0)
    for ch, watts in (("package-0", 120.0), ("package-0.dram", 15.0), ("package-1", 90.0), ("package-1.dram", 12.0)):
        s = np.array([r[1][ch] for r in rows])
        assert (s["status"] == OK).all(), ch
        assert np.allclose(s["watts"], watts, rtol=0.005), (ch, s["watts"])
        assert np.all(np.diff(s["energy_j"]) > 0)
        # energy since open began: the counter's difference, to within one 1 ms update
        assert s["energy_j"][-1] == pytest.approx(watts * rows[-1][0], abs=watts * 0.002 + 1e-3)
    src.close()


def test_update_period_is_measured(tmp_path):
    fake = server(tmp_path)
    src = opened(fake, inference_s=0.05)
    caps = src.capabilities()
    assert caps.channel_info["package-0"]["update_period_s"] == pytest.approx(0.001, abs=0.0006)
    assert caps.measured_update_period_s == pytest.approx(0.001, abs=0.0006)
    src.close()


def test_wrap_around_is_followed(tmp_path):
    # an AMD-style small counter: 100 J range, 65 W: wraps every 1.5 s
    fake = FakePowercap(tmp_path / "pc", {"intel-rapl:0": {"name": "package-0", "watts": 65.0, "range": 100_000_000, "limit_w": 88.0, "start_uj": 99_000_000}})
    src = opened(fake, interval=0.5)
    rows = run_for(src, fake, 10.0)
    s = np.array([r[1]["package-0"] for r in rows])
    assert (s["status"] == OK).all()
    assert np.allclose(s["watts"], 65.0, rtol=0.005)
    assert s["energy_j"][-1] == pytest.approx(65.0 * rows[-1][0], abs=0.2)
    assert src.capabilities().channel_info["package-0"]["counter"]["wraps"] >= 6
    src.close()


def test_long_sample_intervals_still_poll_often_enough_to_see_every_wrap(tmp_path):
    fake = FakePowercap(tmp_path / "pc", {"intel-rapl:0": {"name": "package-0", "watts": 65.0, "range": 100_000_000, "limit_w": 30.0}})
    src = opened(fake, interval=5.0)  # 5 s samples, a wrap every 1.5 s: polled every 1 s in between
    assert src.poll_s == 1.0
    rows = run_for(src, fake, 20.0)
    s = np.array([r[1]["package-0"] for r in rows])
    assert (s["status"] == OK).all()
    assert np.allclose(s["watts"], 65.0, rtol=0.005)
    src.close()


def test_a_counter_left_unread_longer_than_it_can_wrap_is_flagged(tmp_path):
    fake = FakePowercap(tmp_path / "pc", {"intel-rapl:0": {"name": "package-0", "watts": 65.0, "range": 100_000_000, "limit_w": 88.0}})
    src = opened(fake, interval=5.0, poll_s=5.0)  # 100 J at 2 x 88 W: may wrap after 0.57 s
    rows = run_for(src, fake, 12.0)
    s = np.array([r[1]["package-0"] for r in rows])
    assert (s["status"] == ERROR).all() and np.isnan(s["watts"]).all()
    assert src.capabilities().channel_info["package-0"]["counter"]["ambiguous_intervals"] >= 2
    src.close()


def test_amd_layout_package_and_core(tmp_path):
    fake = FakePowercap(tmp_path / "pc", {
        "intel-rapl:0": {"name": "package-0", "watts": 140.0, "range": AMD_RANGE_UJ},
        "intel-rapl:0:0": {"name": "core", "watts": 100.0, "range": AMD_RANGE_UJ},
    })
    src = opened(fake)
    assert src.capabilities().channels == ("package-0",)
    src.close()
    src = opened(fake, domains=["core"])
    caps = src.capabilities()
    assert caps.channels == ("package-0.core",)
    assert any("part of its package" in w for w in caps.channel_info["package-0.core"]["warnings"])
    src.close()


def test_domains_by_name_zone_or_kind(tmp_path):
    fake = server(tmp_path)
    assert opened(fake, domains=["dram"], infer_update_period=False).capabilities().channels == ("package-0.dram", "package-1.dram")
    assert opened(fake, domains=["intel-rapl:1", "package-0.core"], infer_update_period=False).capabilities().channels == ("package-1", "package-0.core")
    assert opened(fake, domains=["psys"], infer_update_period=False).capabilities().channels == ("psys",)
    with pytest.raises(SourceUnavailable, match=r"no RAPL domain 'gpu' here \(domains: package-0 \(intel-rapl:0\), package-0.core"):
        opened(fake, domains=["gpu"])


def test_overlapping_domains_are_refused(tmp_path):
    fake = server(tmp_path)
    with pytest.raises(SourceError, match="package-0.core is part of package-0; a source's channels are added up"):
        opened(fake, domains=["package", "core"])
    with pytest.raises(SourceError, match="package-1 is part of psys"):
        opened(fake, domains=["psys", "package-1"])


def test_identity_names_the_cpu(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\n")
    monkeypatch.setattr(rapl, "CPUINFO", str(info))
    fake = server(tmp_path)
    src = opened(fake, infer_update_period=False)
    ident = src.identify()
    assert (ident.vendor, ident.model, ident.address) == ("AuthenticAMD", "RAPL AMD EPYC 9654 96-Core Processor", str(fake.root))
    assert ident.firmware.startswith("Linux ")
    assert [d["zone"] for d in ident.extra["domains"]] == ["intel-rapl:0", "intel-rapl:0:2", "intel-rapl:1", "intel-rapl:1:0"]
    src.close()


# ---------------------------------------------------------------------------------------------
# Absent, unreadable, broken


def test_permission_denied_says_how_to_fix_it(tmp_path, as_a_user):
    fake = server(tmp_path)
    for z in fake.zones.values():
        os.chmod(z["folder"] / "energy_uj", 0)  # the kernel's 0400 root-only, as seen by a user
    with pytest.raises(SourceUnavailable) as err:
        opened(fake)
    msg = str(err.value)
    assert "intel-rapl:0/energy_uj: permission denied" in msg
    for needle in ("CVE-2020-8694", "run labconsole as root", "/etc/sysfs.conf", "udev", "chmod o+r", "cap_dac_read_search"):
        assert needle in msg, needle


def test_absent_powercap_says_so(tmp_path):
    with pytest.raises(SourceUnavailable, match=r"does not exist \(options.root\)"):
        RaplSource("cpu", RaplOptions(root=str(tmp_path / "nope"))).open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceUnavailable, match=r"no RAPL zones \(intel-rapl:N\) under .*modprobe intel_rapl_msr.*virtual machines"):
        RaplSource("cpu", RaplOptions(root=str(tmp_path / "empty"))).open()


def test_the_default_root_on_this_host():
    """No fake: where powercap is missing (this CI) the message is clear; where it is there, it reads or explains."""
    try:
        src = RaplSource("cpu", RaplOptions(inference_s=0.05), sample_interval_s=0.2)
        src.open()
    except SourceUnavailable as exc:
        assert any(s in str(exc) for s in ("does not exist", "no RAPL zones", "CVE-2020-8694", "cannot read"))
        return
    try:
        assert src.capabilities().channels
        assert src.read(2.0)
    finally:
        src.close()


def test_garbage_at_open_names_the_file(tmp_path):
    fake = server(tmp_path)
    (fake.zones["intel-rapl:1"]["folder"] / "max_energy_range_uj").write_text("lots\n")
    with pytest.raises(SourceError, match=r"intel-rapl:1/max_energy_range_uj does not hold a number \(it says 'lots'\)"):
        opened(fake)


def test_garbage_or_a_vanished_zone_mid_run_gives_invalid_samples(tmp_path):
    fake = server(tmp_path)
    src = opened(fake, interval=0.5, domains=["package"])
    run_for(src, fake, 1.0)
    z1 = fake.zones["intel-rapl:1"]
    z1["frozen"] = True
    (z1["folder"] / "energy_uj").write_text("\x00\xff garbage")
    rows = run_for(src, fake, 1.0)
    last = rows[-1][1]
    assert last["package-0"]["status"] == OK and last["package-1"]["status"] == ERROR
    (z1["folder"] / "energy_uj").unlink()
    rows = run_for(src, fake, 1.0)
    assert rows[-1][1]["package-1"]["status"] == ERROR
    assert "does not exist" in src._zones[1].last_error
    z0 = fake.zones["intel-rapl:0"]
    z0["frozen"] = True
    (z0["folder"] / "energy_uj").write_text("-5\n")
    with pytest.raises(SourceError, match=r"no RAPL domain could be read .*negative number"):
        run_for(src, fake, 1.0)
    src.close()


# ---------------------------------------------------------------------------------------------
# Discovery


def test_discover_lists_domains_with_snippets(tmp_path):
    from labconsole.profile import parse_profile_text
    import yaml

    fake = server(tmp_path)
    found = RaplSource.discover({"rapl_root": str(fake.root)})
    assert [d.address.rsplit("/", 1)[1] for d in found] == ["intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:0:2", "intel-rapl:1", "intel-rapl:1:0", "intel-rapl:2"]
    assert {d.status for d in found} == {"available"}
    assert found[1].model.startswith("RAPL package-0.core") and "part of its package" in found[1].detail
    snippets = [found[0].profile_snippet, found[3].profile_snippet]
    assert snippets[0]["options"] == {"domains": ["package-0"], "root": str(fake.root)}
    assert snippets[1]["scope"] == "dram"
    text = yaml.safe_dump({"name": "cpu", "sources": snippets}, sort_keys=False)
    profile, _, _ = parse_profile_text(text.encode(), "discovered.yaml")
    assert [s.name for s in profile.sources] == ["cpu", "package-0-dram"]


def test_discover_reports_unreadable_counters(tmp_path, as_a_user):
    fake = server(tmp_path)
    os.chmod(fake.zones["intel-rapl:0"]["folder"] / "energy_uj", 0)
    found = {d.address.rsplit("/", 1)[1]: d for d in RaplSource.discover({"rapl_root": str(fake.root)})}
    assert found["intel-rapl:0"].status == "no-permission" and "CVE-2020-8694" in found["intel-rapl:0"].detail
    assert found["intel-rapl:1"].status == "available"


def test_discover_without_powercap_is_a_note(tmp_path):
    from labconsole.sources.discovery import discover_everything

    res = discover_everything({"rapl_root": str(tmp_path / "none")}, drivers=["rapl"])
    assert res.found == [] and "does not exist" in res.notes["rapl"]


def test_sample_status_is_never_ok_with_nan(tmp_path):
    fake = server(tmp_path)
    src = opened(fake, interval=0.2)
    for _, row in run_for(src, fake, 2.0):
        for s in row.values():
            assert (s["status"] == OK) == (not math.isnan(s["watts"]))
    src.close()
