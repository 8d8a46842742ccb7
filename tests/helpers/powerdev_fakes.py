"""A small, self-consistent power-dev session folder (what power-dev's client leaves), for checks.

`make_session()` writes power/, ranging/, run_1/ as the current power-dev code would (reference
§1.5, §1.8, §2.3, §2.5): client.json and server.json with matching messages, UUIDs, phases
and SHA-1 results, PTD's message transcript, ptd_logs.txt with the lines the checker looks for,
1 Hz spl.txt files and LoadGen detail/summary logs. It passes every check; tests then break
one thing on purpose (and call `rehash()` when the break should not also trip the checksums).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from labconsole.instruments.ptd import format_power_time
from labconsole.mlperf.checks.rounds import CURRENT_SOURCES
from labconsole.mlperf.powerdev import RESULT_FILES, format_spl_line
from mlperf_fakes import write_detail_log

S = 1_000_000_000
T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC


def ptd_time(sec: float) -> str:
    return format_power_time(int(round(sec * 1e9)))


@dataclass
class Session:
    root: Path
    session: str
    ranging_window: tuple[float, float]
    testing_window: tuple[float, float]
    client: dict = field(default_factory=dict)
    server: dict = field(default_factory=dict)

    def save(self) -> None:
        (self.root / "power" / "client.json").write_text(json.dumps(self.client, indent=4))
        (self.root / "power" / "server.json").write_text(json.dumps(self.server, indent=4))

    def rehash(self) -> None:
        """Record the current SHA-1 of every result file (after a deliberate edit)."""
        for side, obj in (("client", self.client), ("server", self.server)):
            for k in list(obj["results"]):
                p = self.root / k
                if p.exists():
                    obj["results"][k] = hashlib.sha1(p.read_bytes()).hexdigest()
        self.save()

    def ptd(self, cmd_prefix: str) -> list[dict]:
        return [m for m in self.server["ptd_messages"] if m["cmd"].startswith(cmd_prefix)]


def _spl(path: Path, start: float, stop: float, watts, mark: str, volts=230.0, amps=0.5, pf=0.9) -> None:
    lines = []
    t = start + 0.301
    i = 0
    while t < stop:
        w = watts(i) if callable(watts) else watts
        lines.append(format_spl_line(int(round(t * 1e9)), w, volts, amps, pf, mark, valid=w != -1))
        t += 1.0
        i += 1
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")


def make_session(
    root: Path,
    *,
    duration_s: float = 60.0,
    ranging_w=100.0,
    testing_w=100.0,
    scenario: str = "Offline",
    queries: int = 1,
    version: str = "1.11.1",
    model: str = "YokogawaWT310E",
    device_type: int = 49,
    testing_uncertainty: str = "Uncertainty,0.003101,0.002991,0.003622,{n},0,{n},0",
    ntp_offset_s: float = 0.002,
    extra_detail: dict | None = None,
) -> Session:
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("power", "ranging", "run_1"):
        (root / sub).mkdir(exist_ok=True)
    sid = "2023-11-14_22-13-20"
    cu, su = "86ca146a-35de-4cad-b117-3eb72e9bfb68", "1b04d115-1973-4598-8f13-2cdb89c8e55b"
    D = duration_s
    r0 = T0 + 1.0
    rph = [r0, r0 + 10.0, r0 + 10.0 + D, r0 + 20.0 + D]  # start cmd, Go sent, stop cmd, logs written
    t0 = rph[3] + 1.0
    tph = [t0, t0 + 10.0, t0 + 10.0 + D, t0 + 20.0 + D]
    rwin = (rph[1] + 2.0, rph[2] - 2.0)
    twin = (tph[1] + 2.0, tph[2] - 2.0)
    detail = {"result_samples_per_second": 1000.0, "effective_min_duration_ms": 600000, **(extra_detail or {})}
    for sub, (b, e) in (("ranging", rwin), ("run_1", twin)):
        write_detail_log(root / sub, scenario, int(b * 1e3) * 1_000_000, int(e * 1e3) * 1_000_000, queries=queries, extra=detail)
    _spl(root / "ranging" / "spl.txt", rph[1], rph[2], ranging_w, f"{sid}_ranging")
    _spl(root / "run_1" / "spl.txt", tph[1], tph[2], testing_w, f"{sid}_testing")
    n = int(D)

    def msg(cmd, reply, t):
        return {"cmd": cmd, "cmd_time": t, "reply": reply, "reply_time": t + 0.004}

    client_msgs = [
        msg("mlcommons/power client v3", "mlcommons/power server v3", T0),
        msg("time", str(T0 + 0.01 + 0.002), T0 + 0.01),
        msg(f"new,,{cu}", f"OK {sid},{su}", T0 + 0.02),
        msg("time", str(r0 - 0.5 + 0.002), r0 - 0.5),
        msg(f"session,{sid},start,ranging", "OK", rph[0]),
        msg("time", str(rph[1] + 0.002), rph[1] + 0.001),
        msg("time", str(rph[2] - 0.01 + 0.002), rph[2] - 0.01),
        msg(f"session,{sid},stop,ranging", "OK", rph[2]),
        msg("time", str(rph[3] + 0.002), rph[3] + 0.001),
        msg("time", str(t0 - 0.5 + 0.002), t0 - 0.5),
        msg(f"session,{sid},start,testing", "OK", tph[0]),
        msg("time", str(tph[1] + 0.002), tph[1] + 0.001),
        msg("time", str(tph[2] - 0.01 + 0.002), tph[2] - 0.01),
        msg(f"session,{sid},stop,testing", "OK", tph[2]),
        msg("time", str(tph[3] + 0.002), tph[3] + 0.001),
    ]
    server_msgs = [dict(m, cmd_time=m["cmd_time"] + 0.001, reply_time=m["cmd_time"] + 0.0015) for m in client_msgs]
    unc = testing_uncertainty.format(n=n)
    ptd_messages = [
        ("Hello", "Hello, PTDaemon here!"),
        ("Identify", f"{model},1000,1,1,1,1,0,1,1,version={version}-e8c7a49a-20240910,OS=Linux,mode=power,1,1,1,0,0,no_cal_date,YOKOGAWA;WT310E;C2PH13047V;F1.03"),
        ("RR", "Ranges,1,0.500000,1,300.000000"),
        ("SR,V,Auto", "Range V changed"),
        ("SR,A,Auto", "Range A changed"),
        ("SR,A,Auto", "Range A changed"),
        (f"Go,1000,0,{sid}_ranging", "Starting untimed measurement, maximum 500000 samples at 1000ms with 0 rampup samples"),
        ("Stop", "Stopping untimed measurement"),
        ("RL,*,*", "Invalid number of parameters"),
        ("RL", f"Last {n} samples"),
        ("Uncertainty", f"Uncertainty,-1.0,10000000.000000,0.000000,{n},0,0,{n}"),
        ("Watts", f"Watts,100.000000,99.000000,101.000000,{n},0,{n}"),
        ("SR,V,230.0", "Range V changed"),
        ("SR,A,0.55", "Range A changed"),
        (f"Go,1000,0,{sid}_testing", "Starting untimed measurement, maximum 500000 samples at 1000ms with 0 rampup samples"),
        ("Watts", f"Watts,100.000000,99.000000,101.000000,{n},0,{n}"),
        ("Uncertainty", unc),
        ("Stop", "Stopping untimed measurement"),
        ("RL,*,*", "Invalid number of parameters"),
        ("RL", f"Last {n} samples"),
        ("Uncertainty", unc),
        ("Watts", f"Watts,100.000000,99.000000,101.000000,{n},0,{n}"),
        ("SR,V,Auto", "Range V changed"),
        ("SR,A,Auto", "Range A changed"),
    ]
    ptd_log = [
        f"{ptd_time(T0 - 20)}: SPEC PTDaemon Tool Version 1.11.1-e8c7a49a-20240910",
        f"{ptd_time(T0 - 19)}: Uncertainty checking for YokogawaWT310E is activated",
        f"{ptd_time(rph[1])}: Go with mark '{sid}_ranging'",
        f"{ptd_time(rph[1] + 3)}: ERROR: Can't evaluate uncertainty of this sample!",
        f"{ptd_time(rph[1] + 3)}: WARNING: Uncertainty unknown for the last measurement sample!",
        f"{ptd_time(rph[1] + 4)}: ERROR: Bad watts reading nan from WT310",
        "Buffer was 500.0E-03;1;150.0E+00;1",
        f"{ptd_time(rph[2] + 10)}: Completed test",
        f"{ptd_time(tph[1])}: Go with mark '{sid}_testing'",
        f"{ptd_time(tph[2] + 10)}: Completed test",
    ]
    (root / "power" / "ptd_logs.txt").write_text("Analyzer 1\n" + "\n".join(ptd_log) + "\n", encoding="utf-8")
    (root / "power" / "client.log").write_text(
        f"client 2023-11-14 22:13:20,000 [INFO] NTP:offset = {ntp_offset_s:.3f} s, delay = 0.001 s \n", encoding="utf-8"
    )
    (root / "power" / "server.log").write_text("ptd-server 2023-11-14 22:13:20,000 [INFO] Session started\n", encoding="utf-8")
    sources = CURRENT_SOURCES  # today's power-dev: `check --rules auto` judges the session by today's rules
    base = {"version": "1.0", "timezone": 0, "modules": {}, "sources": dict(sources), "uuid": {"client": cu, "server": su}, "session_name": sid}
    sess = Session(root, sid, rwin, twin)
    base_copy = lambda: json.loads(json.dumps(base))  # noqa: E731 - client and server share nothing
    sess.client = dict(base_copy(), messages=client_msgs, phases={"ranging": [[t, t] for t in rph], "testing": [[t, t] for t in tph]}, results={})
    sess.server = dict(
        base_copy(),
        messages=server_msgs,
        phases={"ranging": [[t + 0.02, t] for t in rph], "testing": [[t + 0.02, t] for t in tph]},
        results={},
        ptd_messages=[{"cmd": c, "reply": r} for c, r in ptd_messages],
        ptd_config=[{"command": ["ptd", "-l", "x", "-p", "8888", str(device_type), "/dev/usbtmc0"], "device_type": device_type, "interface_flag": "", "dc_flag": None, "device_port": "/dev/usbtmc0", "channel": None}],
    )
    client_files = [f for f in RESULT_FILES if f.startswith(("power/client", "ranging/mlperf", "run_1/mlperf"))]
    server_files = [f for f in RESULT_FILES if f not in client_files]
    for f in client_files:
        sess.client["results"][f] = ""
    for f in server_files:
        sess.server["results"][f] = ""
    sess.rehash()
    return sess
