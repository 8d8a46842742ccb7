"""The rules of each MLPerf Inference round, and which round a result was made for.

A result is judged by the checker of the round it was submitted to: power-dev's compliance
checker changed between rounds (accepted PTD versions, messages, PTD-log handling). `check
--rules auto` (the default) detects the round of an MLPerf result folder from the date of its
run, corroborated by the power-dev sources it ran (and, with no date, by its PTD version);
`--rules vX.Y` forces a round, `--rules current` today's checker. A labconsole bundle is new
work: it is judged by today's rules.

Where the facts come from (power-dev's git history is not available here, so each is sourced):
  [ref]  ../shared/reference/mlperf-power.md §5.1: SUPPORTED_VERSION ["1.9.1", "1.9.2"] (2022)
         -> ["1.10.0"] (2024-01, power-dev 8d5d010) -> ["1.11.1"] (2025, today's); "Uncertainty
         above 1 %" became an error in 2023-04 (0d72c26); ptd_config became a list with the
         multi-analyzer rewrite (c052937, 2024-09); the vendored checker is power-dev c4b3ad8
         (2025-02-21), the v5.0 round's.
  [fix]  the published results under tests/fixtures/mlperf-results/ (each passed its round's
         checker): PTD 1.9.2 in v1.0, v1.1, v2.1; PTD 1.10.0 in v3.0 and v3.1 (so 1.10.0 was
         accepted before 2024, when 1.9.x was dropped); the v1.0 client recorded one message fewer
         than the server (the server's last, the upload of client.json itself, happened after
         the client wrote client.json); the power-dev source sets in SOURCE_SETS_SEEN.
  [code] today's compliance/check.py: `# timezone_offset` is left commented out where the ranging
         start/stop and the uncertainty activation are read from ptd_logs.txt, and
         `_get_begin_end_time_from_mlperf_log_detail` still takes the client's session descriptor
         it no longer uses: the 2021 checkers read those times as local times and corrected
         them by server.json's / client.json's `timezone` (seconds west of UTC). Inferred; every
         2021 result seen records timezone 0, where the correction changes nothing.
  Round end dates are the MLPerf Inference results publication dates (mlcommons.org): a run
  made up to that day belongs to that round (re-runs during review included).
"""

from __future__ import annotations

import contextvars
import hashlib
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from labconsole.bundle.reader import RunRecord
from labconsole.mlperf.powerdev import SUPPORTED_VERSION, parse_identify


@dataclass(frozen=True)
class Rules:
    name: str  # "v1.0" ... "v4.1", or "current"
    until: date | None  # the round's publication date; None for today's rules
    ptd_versions: tuple[str, ...]  # PTD versions its checker accepted [ref][fix]
    client_misses_last_upload: bool = False  # v1.0's protocol: the client lacks the server's last `upload` [fix]
    local_times: bool = False  # 2021 checkers: PTD log times + server.json timezone, LoadGen's + client.json's [code]
    uncertainty_is_error: bool = True  # a testing sample above 1 % fails (2023-04 on) [ref]
    ptd_config_list: bool = True  # server.json ptd_config must be a list (2024-09 on) [ref]
    checker: str = ""  # which checker, in words

    @property
    def is_current(self) -> bool:
        return self.until is None


_V19 = ("1.9.1", "1.9.2")
_OLD = dict(uncertainty_is_error=False, ptd_config_list=False)
ROUNDS: tuple[Rules, ...] = (
    Rules("v1.0", date(2021, 4, 21), _V19, client_misses_last_upload=True, local_times=True, checker="the 2021 checker of round v1.0", **_OLD),
    Rules("v1.1", date(2021, 9, 22), _V19, local_times=True, checker="the 2021 checker of round v1.1", **_OLD),
    Rules("v2.0", date(2022, 4, 6), _V19, checker="the checker of round v2.0", **_OLD),
    Rules("v2.1", date(2022, 9, 8), _V19, checker="the checker of round v2.1", **_OLD),
    Rules("v3.0", date(2023, 4, 5), _V19 + ("1.10.0",), checker="the checker of round v3.0", **_OLD),
    Rules("v3.1", date(2023, 9, 11), _V19 + ("1.10.0",), ptd_config_list=False, checker="the checker of round v3.1"),
    Rules("v4.0", date(2024, 3, 27), ("1.10.0",), ptd_config_list=False, checker="the checker of round v4.0"),
    Rules("v4.1", date(2024, 8, 28), ("1.10.0",), ptd_config_list=False, checker="the checker of round v4.1"),
)
CURRENT = Rules("current", None, SUPPORTED_VERSION, checker="today's checker (power-dev c4b3ad8, 2025-02-21)")
BY_NAME = {r.name: r for r in (*ROUNDS, CURRENT)}

# The one source set today's sources_checksums.json accepts (power-dev c4b3ad8) [ref]: the SHA-1 of
# every power-dev .py file as client.json / server.json record it.
CURRENT_SOURCES = {
    "__init__.py": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "client.py": "33ca4f26368777ac06e01f9567b714a4b8063886",
    "lib/__init__.py": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "lib/client.py": "ac2aa093c8e8bbc9569b9e2a3471bc64e58a2258",
    "lib/common.py": "611d8b29633d331eb19c9455ea3b5fa3284ed6df",
    "lib/external/__init__.py": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "lib/external/ntplib.py": "4da8f970656505a40483206ef2b5d3dd5e81711d",
    "lib/server.py": "9bc9a3b6b9b716520658ac175913bcbbdb354336",
    "lib/source_hashes.py": "60a2e02193209e8d392803326208d5466342da18",
    "lib/summary.py": "602a9fedfa503e5544d27ab3b0067f235047efc3",
    "lib/time_sync.py": "80894ef2389e540781ff78de94db16aa4203a14e",
    "server.py": "c3f90f2f7eeb4db30727556d0c815ebc89b3d28b",
    "tests/unit/__init__.py": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "tests/unit/test_server.py": "948c1995d4008bc2aa6c4046a34ffa3858d6d671",
    "tests/unit/test_source_hashes.py": "00468a2907583c593e6574a1f6b404e4651c221a",
}


def sources_fingerprint(sources: dict) -> str:
    """A short name for a power-dev source set (SHA-1 of its sorted `path=sha1` lines)."""
    text = "".join(f"{k}={v}\n" for k, v in sorted((str(k), str(v)) for k, v in sources.items()))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# Source sets seen in published results, with the rounds whose checker passed them [fix].
SOURCE_SETS_SEEN: dict[str, tuple[str, ...]] = {
    "617b96d0c249aa37": ("v1.0",),  # Krai rpi4coral (12 files, lib/server.py 2ed36471)
    "dd02f44edb238c9b": ("v1.1", "v2.1"),  # Inspur NE5260M5; Dell XR12's server (lib/server.py 24ae49fb)
    "a626502a355c07f2": ("v2.1", "v3.0"),  # Dell XR12's client; SiMa davinci (lib/server.py cda0cdfa)
    "a5b17016731e505e": ("v3.1",),  # NVIDIA Orin (lib/server.py c7af63c3)
    "25576622277f2ae5": ("v4.0",),  # Dell XR8620 (lib/server.py 99303c83)
    sources_fingerprint(CURRENT_SOURCES): ("current",),
}


@dataclass
class RulesChoice:
    """The rules applied, how they were chosen ("auto", "--rules") and why, in words."""

    rules: Rules
    chosen_by: str
    why: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"name": self.rules.name, "checker": self.rules.checker, "chosen_by": self.chosen_by, "why": list(self.why)}

    def describe(self) -> str:
        return f"{self.rules.name} ({self.rules.checker}); {self.chosen_by}: " + "; ".join(self.why)


def round_for_date(day: date) -> Rules:
    return next((r for r in ROUNDS if day <= r.until), CURRENT)


def _run_date(record: RunRecord) -> tuple[date | None, str]:
    """The day the run was made, and where it was read: the testing window (LoadGen, UTC), the
    client's phases (epoch s), or the session name (the server's local date)."""
    testing = record.phases.get("testing")
    if testing is not None and testing.detail is not None and testing.detail.power_begin_ns:
        return datetime.fromtimestamp(testing.detail.power_begin_ns / 1e9, tz=timezone.utc).date(), "the testing run's power_begin"
    for name in ("client.json", "server.json"):
        try:
            t = float(record.power_json[name]["phases"]["testing"][0][0])
            return datetime.fromtimestamp(t, tz=timezone.utc).date(), f"{name} phases"
        except (KeyError, IndexError, TypeError, ValueError, OverflowError, OSError):
            continue
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)_", str((record.power_json.get("server.json") or {}).get("session_name") or ""))
    if m:
        try:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3))), "the session name"
        except ValueError:
            pass
    return None, ""


def _ptd_version(record: RunRecord) -> str | None:
    msgs = (record.power_json.get("server.json") or {}).get("ptd_messages")
    for m in msgs if isinstance(msgs, list) else []:
        if isinstance(m, dict) and m.get("cmd") == "Identify":
            return parse_identify(str(m.get("reply", ""))).version or None
    return None


def _source_sets(record: RunRecord) -> list[tuple[str, str]]:
    out = []
    for name in ("client.json", "server.json"):
        src = (record.power_json.get(name) or {}).get("sources")
        if isinstance(src, dict) and src:
            out.append((name, sources_fingerprint(src)))
    return out


def detect(record: RunRecord) -> RulesChoice:
    """The rules of the round a record was made for (`--rules auto`)."""
    if record.kind != "mlperf":
        return RulesChoice(CURRENT, "auto", ["a labconsole bundle is new work, judged by today's rules"])
    why: list[str] = []
    day, where = _run_date(record)
    sets = _source_sets(record)
    version = _ptd_version(record)
    if any(fp == sources_fingerprint(CURRENT_SOURCES) for _, fp in sets):
        why.append("power-dev sources are the set today's checker accepts (power-dev c4b3ad8)")
        if day:
            why.append(f"run on {day.isoformat()} ({where})")
        return RulesChoice(CURRENT, "auto", why)
    if day is not None:
        rules = round_for_date(day)
        why.append(f"run on {day.isoformat()} ({where}), " + (f"before round {rules.name}'s results were published ({rules.until.isoformat()})" if rules.until else f"after round {ROUNDS[-1].name}'s results ({ROUNDS[-1].until.isoformat()})"))
    elif version:
        rules = next((r for r in reversed(ROUNDS) if version in r.ptd_versions), CURRENT)
        why.append(f"no date found; PTD {version} was last accepted in round {rules.name}")
    else:
        return RulesChoice(CURRENT, "auto", ["no date, power-dev sources or PTD version to tell the round by: today's rules"])
    for name, fp in sets:
        seen = SOURCE_SETS_SEEN.get(fp)
        if seen:
            agrees = "consistent" if rules.name in seen else "note: that set was seen in round(s) " + ", ".join(seen)
            why.append(f"{name}'s power-dev sources were seen in published {', '.join(seen)} results ({agrees})")
    if version:
        why.append(f"PTD {version}" + ("" if version in rules.ptd_versions else f", which {rules.name}'s checker did not accept"))
    return RulesChoice(rules, "auto", why)


def choose(record: RunRecord, spec: str | None = "auto") -> RulesChoice:
    """`--rules` SPEC: auto (detect), current, or a round vX.Y (ValueError if none)."""
    spec = (spec or "auto").strip()
    if spec == "auto":
        return detect(record)
    name = spec if spec == "current" else ("v" + spec.lstrip("vV"))
    rules = BY_NAME.get(name)
    if rules is None:
        raise ValueError(f"{spec!r} is not a set of rules (auto, current, or one of {', '.join(r.name for r in ROUNDS)})")
    return RulesChoice(rules, "--rules", [f"forced with --rules {spec}"])


# The rules `run_checks` applies; a check called on its own (tests) detects them for its record.
_IN_FORCE: contextvars.ContextVar[RulesChoice | None] = contextvars.ContextVar("labconsole_rules", default=None)


def in_force(record: RunRecord) -> Rules:
    choice = _IN_FORCE.get()
    return choice.rules if choice is not None else detect(record).rules


def applying(choice: RulesChoice):
    """Context: checks run inside it apply `choice`."""
    return _Applying(choice)


class _Applying:
    def __init__(self, choice: RulesChoice):
        self.choice = choice
        self.token = None

    def __enter__(self) -> RulesChoice:
        self.token = _IN_FORCE.set(self.choice)
        return self.choice

    def __exit__(self, *exc: object) -> None:
        _IN_FORCE.reset(self.token)
