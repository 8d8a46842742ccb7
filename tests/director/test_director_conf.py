"""power-dev's server.conf written from a profile, and checked before the director starts.

The written config is read by power-dev's own, unmodified `ServerConfig` (in a subprocess, from
../shared/vendor/power-dev): the PTDaemon command lines it builds are the ones the profile
describes. What the official checker would fail is refused before anything starts.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import run_cli
from labconsole.mlperf import powerdev_conf
from labconsole.mlperf.powerdev_conf import Analyzer
from powerdev_real import POWER_DEV

READ_CONF = """
import json, sys
from ptd_client_server.lib.server import ServerConfig
c = ServerConfig(sys.argv[1])
print(json.dumps({"ntp": c.ntp_server, "listen": [c.host, c.port], "ranging": c.ranging_mode, "commands": c.ptd_command, "summary": c.ptd_summary}))
"""


def _power_dev_reads(conf) -> dict:
    if not (POWER_DEV / "ptd_client_server" / "lib" / "server.py").is_file():
        pytest.skip(f"power-dev is not at {POWER_DEV}")
    proc = subprocess.run(
        [sys.executable, "-c", READ_CONF, str(conf)], capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(POWER_DEV), "PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ignoring unknown" not in proc.stderr, proc.stderr  # every key we write is one it reads
    return json.loads(proc.stdout)


def test_power_devs_own_config_reader_builds_the_ptdaemon_commands_the_profile_describes(tmp_path):
    analyzers = [
        Analyzer(49, "/dev/ttyUSB0", 28881),
        Analyzer(77, "192.168.1.50", 28882, "-n", (1, 2)),
        Analyzer(8, "0", 28883, "-g", None, True, 0),
    ]
    conf = tmp_path / "server.conf"
    conf.write_text(powerdev_conf.render("ntp.example.org", "10.0.0.2", 4950, "/opt/ptd/ptd-linux-x86", analyzers, "MAX"))
    got = _power_dev_reads(conf)
    assert got["ntp"] == "ntp.example.org" and got["listen"] == ["10.0.0.2", 4950] and got["ranging"] == "MAX"
    cmds = [c[:1] + c[3:] for c in got["commands"]]  # less `-l <its temp dir>/ptd_logfile_N.log`
    assert cmds == [
        ["/opt/ptd/ptd-linux-x86", "-p", "28881", "49", "/dev/ttyUSB0"],
        ["/opt/ptd/ptd-linux-x86", "-p", "28882", "-c", "1,2", "-n", "77", "192.168.1.50"],
        ["/opt/ptd/ptd-linux-x86", "-p", "28883", "-b", "0", "-D", "-g", "8", "0"],
    ]
    assert [s["device_type"] for s in got["summary"]] == [49, 77, 8]


@pytest.mark.parametrize(
    "analyzers, words",
    [
        ([Analyzer(99, "COM1", 8888)], "Device number 99 is not supported"),
        ([Analyzer(49, "COM1", 8888), Analyzer(49, "COM2", 8888)], "share PTDaemon port 8888"),
        ([Analyzer(77, "COM1", 8888, channel=(1,))], "needs two channel numbers"),
        ([Analyzer(48, "COM1", 8888)], "multichannel: power-dev's server needs `channel`"),
        ([Analyzer(49, "COM1", 4950)], "the server's own listen port"),
        ([], "no analyzer"),
    ],
)
def test_what_the_official_checker_would_fail_is_named_before_starting(analyzers, words):
    found = powerdev_conf.problems(analyzers, listen_port=4950)
    assert any(words in p for p in found), found


def test_a_good_configuration_has_no_problems():
    assert powerdev_conf.problems([Analyzer(49, "COM1", 8888), Analyzer(52, "COM2", 8889)], 4950) == []


def test_ptd_identify_replies_are_judged_in_the_checkers_words():
    ok = "YokogawaWT310E,1000,1,1,1,1,0,1,1,version=1.11.1-abc-20230101,OS=Linux,mode=power"
    assert powerdev_conf.identify_problems(ok) == []
    old = ok.replace("version=1.11.1", "version=1.10.0")
    assert powerdev_conf.identify_problems(old) == ["PTD version '1.10.0' is not supported. Supported versions are ['1.11.1']"]
    odd = ok.replace("YokogawaWT310E", "HiokiPW3335")
    assert any(p.startswith("Power meter 'HiokiPW3335' is not supported.") for p in powerdev_conf.identify_problems(odd))
    msg = f"Analyzer [2] recieved reply from ptd: '{ok}'"
    assert powerdev_conf.identify_reply(msg) == (2, ok)
    assert powerdev_conf.identify_reply("Analyzer [1] recieved reply from ptd: 'Hello, PTDaemon here!'") is None


PROFILE = """\
name: bench-director
sources:
  - name: wall
    driver: director
workload:
  official: true
director:
  address: 127.0.0.1
  ntp_server: ntp.example.org
  ptd: /opt/ptd/ptd-linux-x86
  analyzers:
{analyzers}
"""


def test_director_check_writes_the_config_and_refuses_an_unsupported_one(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(PROFILE.format(analyzers="    - {device_type: 49, device_port: /dev/ttyUSB0, network_port: 8888}"))
    proc = run_cli("director", "--profile", str(good), "--check", "--workdir", str(tmp_path / "w"), env={"LABCONSOLE_POWERDEV": str(POWER_DEV)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (tmp_path / "w" / "server.conf").read_text()
    assert "[analyzer1]\ndeviceType: 49\n" in text and "ptd: /opt/ptd/ptd-linux-x86" in text and "config OK" in proc.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(PROFILE.format(analyzers="    - {device_type: 49, device_port: COM1, network_port: 8888}\n    - {device_type: 12, device_port: COM2, network_port: 8888}"))
    proc = run_cli("director", "--profile", str(bad), "--check", "--workdir", str(tmp_path / "b"), env={"LABCONSOLE_POWERDEV": str(POWER_DEV)})
    assert proc.returncode == 1
    assert "Device number 12 is not supported" in proc.stdout and "share PTDaemon port 8888" in proc.stdout
    assert not (tmp_path / "b" / "server.conf").exists()


def test_an_official_workload_without_a_director_is_a_profile_error(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("name: x\nsources:\n  - name: wall\n    driver: director\nworkload:\n  official: true\n")
    proc = run_cli("run", "--profile", str(p), "--out", str(tmp_path / "rec"))
    assert proc.returncode == 2 and "needs a `director:` section" in proc.stderr
