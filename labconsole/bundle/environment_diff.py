"""What changed on the bench between two recordings: sources, calibration, host, software.

One comparison serves both `labconsole run --from BUNDLE` (the bench now against the bench
then: a source that is gone refuses the rerun, a different serial or version is a warning)
and `labconsole compare A B` (the two recordings' benches side by side). Inputs are the
`environment.json` objects bundles store (`labconsole.bundle.environment.collect`); an MLPerf result
folder's PTD records give a smaller one (`record_environment`).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass
from typing import Any

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}


@dataclass
class Difference:
    severity: str  # error | warning | info
    key: str  # dotted path, e.g. "sources.wall.serial", "packages.numpy"
    then: Any
    now: Any
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.severity.upper():7} {self.message}"


def _shown(v: Any) -> str:
    return "(none)" if v in (None, "") else str(v)


def _changed(key: str, then: Any, now: Any, severity: str, what: str) -> Difference:
    return Difference(severity, key, then, now, f"{what}: {_shown(then)} -> {_shown(now)}")


def dig(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


# (path in environment.json, what it is, severity when it differs). Anything that can change a
# reading or the load is a warning; what cannot (the interpreter's path) is information.
HOST_FIELDS: list[tuple[tuple[str, ...], str, str]] = [
    (("host",), "host name (a different machine?)", WARNING),
    (("cpu", "model"), "CPU model", WARNING),
    (("cpu", "count"), "CPU count", WARNING),
    (("memory_bytes",), "memory (bytes)", WARNING),
    (("os", "system"), "operating system", WARNING),
    (("os", "release"), "OS release", WARNING),
    (("os", "platform"), "OS platform", WARNING),
    (("os", "machine"), "machine architecture", WARNING),
    (("python", "implementation"), "Python implementation", WARNING),
    (("python", "version"), "Python version", WARNING),
    (("python", "executable"), "Python executable", INFO),
    (("labconsole_git_commit",), "labconsole git commit", WARNING),
    (("gpu_driver",), "GPU driver", WARNING),
    (("ptd_version",), "PTDaemon version", WARNING),
    (("ptd_host_os",), "PTDaemon host OS", WARNING),
    (("timezone",), "time zone", INFO),
]

# Identity fields of a source: a different unit or firmware is a warning, a new address is not.
IDENTITY_FIELDS = (("model", WARNING), ("serial", WARNING), ("firmware", WARNING), ("vendor", WARNING), ("address", INFO))
CALIBRATION_KEYS = ("calibration_date", "cal_date", "calibration_due")


def _sources_by_name(env: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for s in env.get("sources") or []:
        if isinstance(s, dict) and s.get("name"):
            out[str(s["name"])] = s
    return out


def _certificate_due(cal: Any) -> _dt.date | None:
    if not isinstance(cal, dict) or not cal.get("certificate_date"):
        return None
    try:
        start = _dt.date.fromisoformat(str(cal["certificate_date"]))
    except ValueError:
        return None
    return start + _dt.timedelta(days=int(cal.get("interval_days") or 365))


def _env_date(env: dict) -> _dt.date | None:
    ns = env.get("collected_wall_ns")
    if not isinstance(ns, int):
        return None
    return _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc).date()


def _diff_source(name: str, a: dict, b: dict, then_env: dict, now_env: dict) -> list[Difference]:
    out: list[Difference] = []
    key = f"sources.{name}"
    if a.get("driver") != b.get("driver"):
        out.append(_changed(f"{key}.driver", a.get("driver"), b.get("driver"), WARNING, f"source {name}: driver"))
    ia, ib = a.get("identity") or {}, b.get("identity") or {}
    for field, severity in IDENTITY_FIELDS:
        if (ia.get(field) or "") != (ib.get(field) or ""):
            what = {"serial": "serial number (a different unit)", "firmware": "firmware version"}.get(field, field)
            out.append(_changed(f"{key}.{field}", ia.get(field), ib.get(field), severity, f"source {name}: {what}"))
    xa, xb = ia.get("extra") or {}, ib.get("extra") or {}
    for k in sorted(set(xa) | set(xb)):
        if xa.get(k) != xb.get(k):
            severity = WARNING if k in CALIBRATION_KEYS or "version" in k else INFO
            out.append(_changed(f"{key}.{k}", xa.get(k), xb.get(k), severity, f"source {name}: {k}"))
    if a.get("scope") is not None and b.get("scope") is not None and a.get("scope") != b.get("scope"):
        out.append(_changed(f"{key}.scope", a.get("scope"), b.get("scope"), WARNING, f"source {name}: what it measures"))
    # The calibration certificate the profile declares, and whether it was still valid each time.
    ca, cb = a.get("calibration"), b.get("calibration")
    da, db = dig(ca, "certificate_date"), dig(cb, "certificate_date")
    if (ca is not None or cb is not None) and (da != db or dig(ca, "interval_days") != dig(cb, "interval_days")):
        out.append(_changed(f"{key}.calibration", da, db, WARNING, f"source {name}: calibration certificate date"))
    due_a, due_b = _certificate_due(ca), _certificate_due(cb)
    when_a, when_b = _env_date(then_env), _env_date(now_env)
    if due_b is not None and when_b is not None and when_b > due_b and not (due_a is not None and when_a is not None and when_a > due_a):
        out.append(
            Difference(WARNING, f"{key}.calibration_due", str(due_a) if due_a else None, str(due_b),
                       f"source {name}: calibration certificate expired on {due_b} (it was valid for the earlier run)")
        )
    pa, pb = dig(a, "capabilities", "power_kind"), dig(b, "capabilities", "power_kind")
    if pa and pb and pa != pb:
        out.append(_changed(f"{key}.power_kind", pa, pb, WARNING, f"source {name}: what its watts are (instant/average/counter/meter)"))
    return out


def diff_environments(then: dict | None, now: dict | None, missing_source: str = ERROR, sides: tuple[str, str] | None = None) -> list[Difference]:
    """Every difference between two benches, most serious first.

    `missing_source`: the severity of a source that worked then and is absent or unusable now
    (an error for a rerun: the same measurement cannot be made; a warning when comparing).
    `sides`: names for the two when comparing recordings ("A", "B"); a rerun speaks of then and now.
    An environment marked `partial` (an MLPerf folder's) records only some fields: what either
    side does not record is one line of information, not a difference per field.
    """
    out: list[Difference] = []
    if not then:
        return [Difference(WARNING, "environment", None, None, "the earlier recording stored no environment (environment.json); the bench then is unknown")]
    if not now:
        return [Difference(WARNING, "environment", None, None, "no environment recorded for the later run; the bench now is unknown")]
    sa, sb = _sources_by_name(then), _sources_by_name(now)
    for name, a in sa.items():
        b = sb.get(name)
        was_ok = a.get("status", "ok") == "ok"
        if b is None or b.get("status", "ok") != "ok":
            if was_ok:
                ident = a.get("identity") or {}
                desc = " ".join(x for x in (ident.get("model"), f"s/n {ident['serial']}" if ident.get("serial") else "") if x) or a.get("driver") or "?"
                if sides:
                    msg = f"source {name} ({a.get('driver')}, {desc}) is in {sides[0]}" + (f", not in {sides[1]}" if b is None else f", unusable in {sides[1]}: {b.get('error') or b.get('status')}")
                else:
                    why = "not in the profile" if b is None else (b.get("error") or b.get("status"))
                    msg = f"source {name} ({a.get('driver')}, {desc}) was used then and is missing now: {why}"
                out.append(Difference(missing_source, f"sources.{name}", desc, None, msg))
            continue
        if not was_ok:
            out.append(Difference(INFO, f"sources.{name}.status", a.get("status"), "ok", f"source {name} was unavailable then ({a.get('error') or a.get('status')}) and works now"))
            continue  # nothing recorded then to compare its identity with
        out.extend(_diff_source(name, a, b, then, now))
    for name, b in sb.items():
        if name not in sa and b.get("status", "ok") == "ok":
            ident = b.get("identity") or {}
            where = f"is in {sides[1]}, not in {sides[0]}" if sides else "is new"
            out.append(Difference(INFO, f"sources.{name}", None, ident.get("model") or b.get("driver"), f"source {name} ({b.get('driver')}) {where}"))
    partial = bool(then.get("partial") or now.get("partial"))
    unrecorded: tuple[list[str], list[str]] = ([], [])
    for path, what, severity in HOST_FIELDS:
        va, vb = dig(then, *path), dig(now, *path)
        if va != vb:
            if partial and (va is None or vb is None):
                unrecorded[0 if va is None else 1].append(what.split(" (")[0])
                continue
            out.append(_changed(".".join(path), va, vb, severity, what))
    pa, pb = then.get("packages") or {}, now.get("packages") or {}
    if partial and (not pa or not pb):
        if pa or pb:
            unrecorded[0 if not pa else 1].append(f"the versions of {len(pa or pb)} packages")
    else:
        for name in sorted(set(pa) | set(pb)):
            va, vb = pa.get(name), pb.get(name)
            if va != vb:
                absent = ("(not in A)", "(not in B)") if sides else ("(not installed then)", "(not installed now)")
                what = f"package {name}" + (f" {absent[0]}" if va is None else f" {absent[1]}" if vb is None else "")
                out.append(_changed(f"packages.{name}", va, vb, WARNING, what))
    names = sides or ("the earlier recording", "the later one")
    for i, env in enumerate((then, now)):
        if unrecorded[i]:
            kind = f" ({env['partial']})" if isinstance(env.get("partial"), str) else ""
            out.append(Difference(INFO, f"unrecorded.{'ab'[i] if sides else ('then', 'now')[i]}", unrecorded[i], None,
                                  f"{names[i]}{kind} does not record, so these are not compared: {', '.join(unrecorded[i])}"))
    out.sort(key=lambda d: SEVERITY_ORDER.get(d.severity, 9))
    return out


# ---------------------------------------------------------------------------------------------
# An MLPerf result folder has no environment.json; its PTD records say which meter it was.


def _ptd_identity(reply: str) -> dict[str, Any]:
    """PTDaemon's `Identify` reply: `<model>,...,version=...,OS=...,...,<cal date>,VENDOR;MODEL;SERIAL;FW`."""
    out: dict[str, Any] = {"extra": {}}
    parts = reply.split(",")
    if parts:
        out["model"] = parts[0]
    for p in parts:
        if p.startswith("version="):
            out["extra"]["ptd_version"] = p[len("version="):]
        elif p.startswith("OS="):
            out["extra"]["ptd_host_os"] = p[len("OS="):]
    if len(parts) >= 2:
        cal = parts[-2]
        out["extra"]["calibration_date"] = None if cal == "no_cal_date" else cal
    tail = parts[-1].split(";") if parts else []
    if len(tail) == 4:
        out["vendor"], out["model"], out["serial"], out["firmware"] = tail
    return out


def _utc_offset(seconds_west: Any) -> Any:
    """power-dev's `timezone` (seconds west of UTC, Python's time.timezone) as environment.json
    writes it (`%z`: +HHMM east of UTC), so the two compare."""
    if isinstance(seconds_west, bool) or not isinstance(seconds_west, (int, float)):
        return seconds_west
    east = -int(seconds_west)
    return f"{'+' if east >= 0 else '-'}{abs(east) // 3600:02d}{abs(east) % 3600 // 60:02d}"


def record_environment(record: Any) -> dict:
    """The environment of a RunRecord: a bundle's own, or what an MLPerf folder's PTD logs tell."""
    if record.kind == "bundle":
        return dict(record.environment or {})
    server = (record.power_json or {}).get("server.json") or {}
    ident: dict[str, Any] = {}
    for msg in server.get("ptd_messages") or []:
        if isinstance(msg, dict) and msg.get("cmd") == "Identify" and isinstance(msg.get("reply"), str):
            ident = _ptd_identity(msg["reply"])
            break
    if not server:
        return {}
    extra = ident.pop("extra", {})
    ident["extra"] = {k: v for k, v in extra.items() if k == "calibration_date"}
    env: dict[str, Any] = {
        "sources": [{"name": "ptd", "driver": "ptd", "status": "ok", "identity": ident, "scope": "wall"}],
        "ptd_version": extra.get("ptd_version"),
        "ptd_host_os": extra.get("ptd_host_os"),
        "timezone": _utc_offset(server.get("timezone")),
        "partial": "an MLPerf result folder: its PTD records only",
        "power_dev_sources": server.get("sources"),
    }
    return env
