"""Guided first-time setup: from what is attached to a commented profile that loads as written.

UI-free on purpose: `labconsole init` drives it with prompts or with options, and the TUI's
setup screen can drive the same `SetupWizard` step by step:

    wiz = SetupWizard(target=None)            # default path: profiles/<name>.yaml
    wiz.discover()                            # -> offers: each find, plus the simulated bench and emulators
    wiz.add_source("1", name="wall", scope="wall")      # -> [] or the loader's issues
    wiz.set_workload(sut="matmul", scenario="Offline", duration_s=60)
    wiz.set_procedure(idle_s=5)
    wiz.text()                                # the profile YAML, with comments
    wiz.write(force=False)                    # -> LoadedProfile (refuses to overwrite)

Every answer is checked by the profile loader itself (`parse_profile_text` on the text that
would be written), so the wizard shows exactly the `FILE:LINE: field: reason` messages a
hand-written profile would get, and what it writes loads without change.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from labconsole.safefile import describe_oserror
from labconsole.emulators.registry import FOR_DRIVER
from labconsole.profile import (
    NAME_PATTERN,
    SCENARIOS,
    SCOPES,
    ProfileError,
    ProfileIssue,
    load_profile,
    parse_profile_text,
)

# What a source measures, in the words an operator uses.
SCOPE_HELP = {
    "wall": "AC power at the wall socket (what MLPerf's metric uses)",
    "system": "the whole system, measured inside it",
    "gpu": "a GPU's own power sensor",
    "cpu": "the CPU package (RAPL)",
    "dram": "memory (RAPL DRAM domain)",
    "dc-rail": "one DC supply rail (e.g. an MLPerf Tiny board)",
    "other": "anything else",
}
SCOPE_WORDS = {"dc rail": "dc-rail", "dc_rail": "dc-rail", "dcrail": "dc-rail", "dc": "dc-rail", "rail": "dc-rail", "memory": "dram", "ac": "wall"}
DRIVER_SCOPE = {"nvml": "gpu", "rapl": "cpu", "lpm01a": "dc-rail"}

SIMULATED_OPTIONS = {"idle_w": 60.0, "dynamic_w": 140.0, "noise_w": 0.8, "volts": 230.0, "utilisation": "workload"}
SIMULATED_COMMENTS = {
    "idle_w": "W with the SUT idle",
    "dynamic_w": "extra W at 100 % CPU utilisation",
    "noise_w": "standard deviation of the reading noise (W)",
    "volts": "mains voltage (V rms)",
    "utilisation": "workload (the benchmark's CPU use) | host (the whole machine) | 0..1",
}

SOURCE_KEYS = ("name", "driver", "scope", "sample_interval_s", "primary", "on_failure", "identity", "calibration", "options", "emulator")
LOADGEN_ONLY = ("sut", "sut_options", "target_qps", "expected_latency_ms", "latency_bound_ms", "samples_per_query", "min_query_count",
                "max_duration_s", "total_sample_count", "performance_sample_count", "seeds", "trace")
COMMAND_ONLY = ("command", "loadgen_logs", "cwd", "env")
SECTION_OF_META = ("name", "description", "operator", "recordings")


class WizardError(Exception):
    """The profile cannot be written (message says why); `issues` holds the loader's findings."""

    def __init__(self, message: str, issues: list[ProfileIssue] | None = None):
        self.issues = issues or []
        super().__init__(message)


@dataclass
class WizardStep:
    key: str
    title: str
    help: str


STEPS = (
    WizardStep("sources", "Sources", "Pick the meters and devices to record, and say what each one measures."),
    WizardStep("workload", "Workload", "What loads the system: a built-in SUT under the real LoadGen, or your own harness; the scenario and how long."),
    WizardStep("procedure", "Procedure", "The idle baseline, the ranging pass, settling time."),
    WizardStep("save", "Save", "Name the bench and write the profile."),
)


@dataclass
class SourceOffer:
    """One thing the person can pick: a find, the simulated meter, or an emulator."""

    key: str  # "1", "2", ... for finds; "simulated"; "emulator:NAME"
    kind: str  # found | simulated | emulator
    driver: str
    label: str
    address: str = ""
    model: str = ""
    serial: str = ""
    status: str = "available"
    detail: str = ""
    snippet: dict[str, Any] = field(default_factory=dict)
    suggested_name: str = "wall"
    suggested_scope: str = "wall"

    @property
    def usable(self) -> bool:
        return self.status == "available"

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["usable"] = self.usable
        return d


@dataclass
class SourceChoice:
    offer_key: str
    name: Any
    driver: str
    scope: Any
    comment: str
    primary: bool | None = None
    sample_interval_s: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    emulator: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other keys a discovery snippet carries


def normalise_scope(text: Any) -> Any:
    """'DC rail' -> 'dc-rail', 'GPU' -> 'gpu'; anything unknown is left for the loader to refuse."""
    if not isinstance(text, str):
        return text
    t = text.strip().lower()
    t = SCOPE_WORDS.get(t, t)
    return t if t in SCOPES else text


def coerce_scalar(text: Any) -> Any:
    """A typed answer as YAML would read it ('10' -> 10, 'true' -> True); never a structure."""
    if not isinstance(text, str):
        return text
    if "\n" in text or not text.strip():
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (int, float, bool, str)) and not isinstance(value, _dt.date):
        return value
    return text


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", text.strip()).strip("-.").lower()
    return (s or "source")[:40]


def _import_discover_all() -> Callable[..., list] | None:
    try:
        from labconsole.sources.discovery import discover_all
    except ImportError:
        return None
    return discover_all


class _AsFind:
    """An offer seen as the find it came from (renumbering the finds keeps everything else)."""

    def __init__(self, o: SourceOffer):
        self.driver, self.address, self.model, self.serial = o.driver, o.address, o.model, o.serial
        self.status, self.detail, self.profile_snippet = o.status, o.detail, o.snippet


# ---------------------------------------------------------------------------------------------
# YAML text


def yaml_value(v: Any) -> str:
    """One value as YAML (flow style for lists and mappings), quoted where YAML needs it."""
    text = yaml.safe_dump(v, default_flow_style=True, width=1 << 30, allow_unicode=True, sort_keys=False).strip()
    if text.endswith("\n..."):
        text = text[:-4].rstrip()
    elif text.endswith("..."):
        text = text[:-3].rstrip()
    return text


def _line(indent: int, key: str, value: Any = None, comment: str | None = None, block: bool = False) -> str:
    text = " " * indent + (f"{key}:" if block else f"{key}: {yaml_value(value)}")
    if comment:
        text = f"{text:<34}# {comment}" if len(text) < 34 else f"{text}  # {comment}"
    return text


def _mapping(indent: int, key: str, d: dict[str, Any] | None, comments: dict[str, str] | None = None, comment: str | None = None) -> list[str]:
    if not d:
        return [_line(indent, key, {}, comment)]
    out = [_line(indent, key, comment=comment, block=True)]
    for k, v in d.items():
        out.append(_line(indent + 2, str(k), v, (comments or {}).get(str(k))))
    return out


# ---------------------------------------------------------------------------------------------


class SetupWizard:
    steps = STEPS

    def __init__(self, target: str | Path | None = None, discover: Callable[..., list] | None = None, base_dir: str | Path | None = None):
        """`target`: where to write (default profiles/<name>.yaml under `base_dir`, the working folder).
        `discover`: the discovery function (default: labconsole.sources.discovery.discover_all)."""
        self.target = Path(target) if target else None
        self.base_dir = Path(base_dir) if base_dir else Path()  # relative: messages name profiles/NAME.yaml
        self._discover = discover
        self.found: list[SourceOffer] = []
        self.discovery_note = ""
        self.discovered = False
        self.meta: dict[str, Any] = {"name": "my-bench", "description": "", "operator": "", "recordings": "recordings"}
        self.sources: list[SourceChoice] = []
        self.workload_type = "loadgen"
        self.loadgen: dict[str, Any] = {"sut": "matmul", "sut_options": {}, "scenario": "Offline", "duration_s": 10, "target_qps": "auto", "expected_latency_ms": "auto"}
        self.command: dict[str, Any] = {"command": [], "loadgen_logs": "", "scenario": "Offline", "duration_s": 600}
        self.procedure: dict[str, Any] = {"idle_s": 3, "ranging": True}

    # --- discovery -------------------------------------------------------------------------
    def discover(self, hints: dict[str, Any] | None = None) -> list[SourceOffer]:
        """Ask what is attached; returns every offer (finds first, then the no-hardware ones)."""
        fn = self._discover or _import_discover_all()
        finds: list = []
        if fn is None:
            self.discovery_note = "discovery is not available in this installation"
        else:
            try:
                finds = list(fn(hints or {}) or [])
            except Exception as exc:  # noqa: BLE001 - a broken probe must not stop the setup
                self.discovery_note = f"discovery failed: {type(exc).__name__}: {exc}"
        self.found = [self._offer_from_find(i, d) for i, d in enumerate(finds)]
        self.discovered = True
        return self.offers()

    def _offer_from_find(self, i: int, d: Any) -> SourceOffer:
        snippet = dict(getattr(d, "profile_snippet", None) or {})
        driver = str(snippet.get("driver") or d.driver)
        ident = " ".join(x for x in (d.model, f"s/n {d.serial}" if d.serial else "") if x) or driver
        label = f"{ident} at {d.address} ({driver})"
        if d.status != "available":
            label += f": {d.status}" + (f" ({d.detail})" if d.detail else "")
        elif d.detail:
            label += f"; {d.detail}"
        return SourceOffer(
            key=str(i + 1), kind="found", driver=driver, label=label, address=d.address, model=d.model, serial=d.serial,
            status=d.status, detail=d.detail, snippet=snippet,
            suggested_name=_slug(str(snippet.get("name") or driver)),
            suggested_scope=str(snippet.get("scope") or DRIVER_SCOPE.get(driver, "wall")),
        )

    def add_address(self, address: str, probe: Callable[[str], Any] | None = None) -> SourceOffer:
        """Ask an instrument named by its address (a VISA resource or a PTDaemon HOST:PORT) for
        its identity, and offer it beside the finds (an address asked before is asked again).
        Returns the offer; `usable` is False when nothing usable answered (its label says why)."""
        if probe is None:
            from labconsole.sources.discovery import probe_address as probe
        address = str(address).strip()
        d = probe(address)
        if not d.address:
            d.address = address
        keep = [o for o in self.found if o.address not in (address, d.address)]
        offer = self._offer_from_find(len(keep), d)
        self.found = [self._offer_from_find(i, _AsFind(o)) for i, o in enumerate(keep)] + [offer]
        self.discovered = True
        return offer

    @property
    def nothing_attached(self) -> bool:
        """True when discovery found nothing usable (then offer the simulated bench or an emulator)."""
        return not any(o.usable for o in self.found)

    def fallback_offers(self) -> list[SourceOffer]:
        out = [
            SourceOffer(
                "simulated", "simulated", "simulated",
                "the simulated bench: a wall meter whose power follows the benchmark's real CPU use (no hardware)",
                suggested_name="wall", suggested_scope="wall",
            )
        ]
        for driver, emu in sorted(FOR_DRIVER.items(), key=lambda kv: kv[1]):
            out.append(
                SourceOffer(
                    f"emulator:{emu}", "emulator", driver,
                    f"the {emu} emulator: a loopback {driver} instrument the console starts for each run (training, no hardware)",
                    suggested_name=_slug(emu), suggested_scope=DRIVER_SCOPE.get(driver, "wall"),
                )
            )
        return out

    def offers(self) -> list[SourceOffer]:
        return self.found + self.fallback_offers()

    def offer(self, what: str) -> SourceOffer:
        """An offer by its key ('1', 'simulated', 'emulator:wt310'), an emulator's driver, or a find's address or driver."""
        what = str(what).strip()
        offers = self.offers()
        for o in offers:
            if o.key == what:
                return o
        if what in ("sim", "simulator"):
            return offers[len(self.found)]
        if what.startswith("emulator:"):
            name = what.split(":", 1)[1]
            for o in offers:
                if o.kind == "emulator" and (o.driver == name or o.key == f"emulator:{name}"):
                    return o
            known = ", ".join(o.key for o in offers if o.kind == "emulator") or "none in this installation"
            raise WizardError(f"no emulator {name!r} (emulators: {known})")
        by_address = [o for o in self.found if o.address == what]
        if by_address:
            return by_address[0]
        by_driver = [o for o in self.found if o.driver == what]
        if len(by_driver) == 1:
            return by_driver[0]
        if len(by_driver) > 1:
            raise WizardError(f"{len(by_driver)} finds use driver {what!r}; pick one by number: " + ", ".join(f"{o.key} ({o.address})" for o in by_driver))
        choices = ", ".join(o.key for o in offers)
        raise WizardError(f"nothing offered as {what!r} (choose one of: {choices})")

    # --- sources --------------------------------------------------------------------------------
    def unique_name(self, base: str) -> str:
        names = {str(s.name) for s in self.sources}
        if base not in names:
            return base
        n = 2
        while f"{base}-{n}" in names:
            n += 1
        return f"{base}-{n}"

    def add_source(
        self,
        what: str,
        name: Any = None,
        scope: Any = None,
        primary: Any = None,
        sample_interval_s: Any = None,
        options: dict[str, Any] | None = None,
        emulator_options: dict[str, Any] | None = None,
    ) -> list[ProfileIssue]:
        """Add a source from an offer; returns the loader's issues for it (and adds nothing) if any."""
        offer = self.offer(what)
        if not offer.usable:
            raise WizardError(f"{offer.label}: cannot be used ({offer.status}); {offer.detail or 'check the connection and permissions'}")
        opts = {k: coerce_scalar(v) for k, v in (options or {}).items()}
        emu = None
        identity = None
        extra: dict[str, Any] = {}
        interval = sample_interval_s
        if offer.kind == "found":
            snippet = offer.snippet
            base = dict(snippet.get("options") or {})
            base.update(opts)
            opts = base
            if interval is None:
                interval = snippet.get("sample_interval_s")
            identity = snippet.get("identity") or ({k: v for k, v in (("model", offer.model), ("serial", offer.serial)) if v} or None)
            extra = {k: v for k, v in snippet.items() if k not in SOURCE_KEYS}
            comment = f"{offer.label} (found by `labconsole init`)"
        elif offer.kind == "simulated":
            opts = {**SIMULATED_OPTIONS, **opts}
            if interval is None:
                interval = 0.1
            comment = "the simulated meter: idle + dynamic x the benchmark's CPU use, with noise (no hardware)"
        else:
            emu = {k: coerce_scalar(v) for k, v in (emulator_options or {}).items()}
            comment = f"a loopback emulator ({offer.key.split(':', 1)[1]}) started by the console for each run: training, no hardware"
        if primary is not None:
            primary = coerce_scalar(primary)
        choice = SourceChoice(
            offer_key=offer.key,
            name=self.unique_name(offer.suggested_name) if name in (None, "") else str(name).strip(),
            driver=offer.driver,
            scope=offer.suggested_scope if scope in (None, "") else normalise_scope(scope),
            comment=comment,
            primary=primary,
            sample_interval_s=coerce_scalar(interval) if interval is not None else None,
            options=opts,
            emulator=emu,
            identity=identity,
            extra=extra,
        )
        if choice.primary is True:
            for s in self.sources:
                s.primary = None
        self.sources.append(choice)
        issues = self.issues("sources")
        if issues:
            self.sources.pop()
        return issues

    def set_primary(self, name: str) -> bool:
        """Make the source called `name` the one the metric comes from; False if none is."""
        if name not in [str(s.name) for s in self.sources]:
            return False
        for s in self.sources:
            s.primary = True if str(s.name) == name else None
        return True

    def primary_index(self) -> int | None:
        if not self.sources:
            return None
        for i, s in enumerate(self.sources):
            if s.primary is True:
                return i
        for i, s in enumerate(self.sources):
            if s.scope in ("wall", "system"):
                return i
        return 0

    # --- workload and procedure ---------------------------------------------------------------
    def set_workload(self, **fields: Any) -> list[ProfileIssue]:
        """Set workload fields (type, sut, sut_options, scenario, duration_s, target_qps,
        expected_latency_ms, latency_bound_ms, command, loadgen_logs, cwd, ...)."""
        saved = (self.workload_type, dict(self.loadgen), dict(self.command))
        kind = fields.pop("type", None)
        if kind is not None:
            self.workload_type = str(kind)
        target = self.command if self.workload_type == "command" else self.loadgen
        for k, v in fields.items():
            if v is None:
                continue
            if k == "sut_options" and isinstance(v, dict):
                v = {kk: coerce_scalar(vv) for kk, vv in v.items()}
            elif k == "command" and isinstance(v, str):
                v = shlex.split(v)  # an argument list; nothing is ever run through a shell
            elif k == "scenario" and isinstance(v, str):
                v = next((s for s in SCENARIOS if s.lower() == v.strip().lower()), v)
            elif not isinstance(v, (dict, list)):
                v = coerce_scalar(v)
            target[k] = v
        if "scenario" in fields or "duration_s" in fields:  # both kinds share these two
            other = self.loadgen if target is self.command else self.command
            for k in ("scenario", "duration_s"):
                if fields.get(k) is not None:
                    other[k] = target[k]
        issues = self.issues("workload")
        if issues:
            self.workload_type, self.loadgen, self.command = saved
        return issues

    def set_procedure(self, **fields: Any) -> list[ProfileIssue]:
        saved = dict(self.procedure)
        for k, v in fields.items():
            if v is not None:
                self.procedure[k] = coerce_scalar(v)
        issues = self.issues("procedure")
        if issues:
            self.procedure = saved
        return issues

    def set_profile(self, **fields: Any) -> list[ProfileIssue]:
        """Name, description, operator, recordings (the folder bundles go to)."""
        saved = dict(self.meta)
        for k, v in fields.items():
            if v is not None:
                self.meta[k] = str(v) if k != "name" else str(v).strip()
        issues = self.issues("meta")
        if issues:
            self.meta = saved
        return issues

    # --- text, validation, writing -------------------------------------------------------------
    @property
    def path(self) -> Path:
        if self.target is not None:
            return self.target
        name = str(self.meta.get("name") or "my-bench")
        safe = name if re.fullmatch(NAME_PATTERN, name) else _slug(name)
        return self.base_dir / "profiles" / f"{safe}.yaml"

    def text(self, placeholder: bool = False) -> str:
        """The profile as it would be written. `placeholder`: with no source yet, a simulated one
        stands in, so the other sections can be checked before the sources are chosen."""
        m = self.meta
        today = _dt.date.today().isoformat()
        shown = os.path.relpath(self.path, self.base_dir) if self.path.is_absolute() else str(self.path)
        out = [
            f"# {m['name']}: a bench profile written by `labconsole init` on {today}.",
            "#",
            f"# Run it with `labconsole run --profile {shown}`; edit it freely: a mistake is",
            "# reported as FILE:LINE: field: what is wrong, and nothing runs until it is fixed.",
            _line(0, "name", m["name"]),
        ]
        if m.get("description"):
            out.append(_line(0, "description", m["description"]))
        if m.get("operator"):
            out.append(_line(0, "operator", m["operator"]))
        out.append(_line(0, "recordings", m["recordings"], "bundles go here (relative to where you run labconsole)"))
        out.append("")
        out.append("sources:")
        sources = self.sources
        if not sources and placeholder:
            sources = [SourceChoice("simulated", "placeholder", "simulated", "wall", "not chosen yet", options={})]
        primary = self.primary_index() if self.sources else 0
        for i, s in enumerate(sources):
            out.append(f"  # {s.comment}")
            out.append(_line(2, "- name", s.name))
            out.append(_line(4, "driver", s.driver))
            out.append(_line(4, "scope", s.scope, "what it measures: " + ", ".join(SCOPES)))
            if s.sample_interval_s is not None:
                out.append(_line(4, "sample_interval_s", s.sample_interval_s, "seconds between readings"))
            if i == primary:
                out.append(_line(4, "primary", True, "the metric is computed from this source"))
            elif s.primary is not None and s.primary is not False:
                out.append(_line(4, "primary", s.primary))
            if s.identity:
                out.extend(_mapping(4, "identity", s.identity, comment="what calibration expects to find"))
            for k, v in s.extra.items():
                out.append(_line(4, str(k), v))
            comments = SIMULATED_COMMENTS if s.driver == "simulated" else None
            if s.options or s.emulator is None:
                out.extend(_mapping(4, "options", s.options, comments))
            if s.emulator is not None:
                out.extend(_mapping(4, "emulator", s.emulator, comment="the console starts a loopback emulator; its address is filled in"))
        out.append("")
        out.extend(self._workload_lines())
        out.append("")
        out.append("procedure:")
        pc = {"idle_s": "idle baseline before ranging (s)", "ranging": "auto-range pass, then fixed ranges for testing", "settle_s": "pause after setting ranges (s)"}
        for k, v in self.procedure.items():
            out.append(_line(2, k, v, pc.get(k)))
        return "\n".join(out) + "\n"

    def _workload_lines(self) -> list[str]:
        out = ["workload:"]
        if self.workload_type == "command":
            c = self.command
            out.append(_line(2, "type", "command", "your own harness, run as an argument list (never through a shell)"))
            out.append(_line(2, "command", c.get("command") or []))
            out.append(_line(2, "loadgen_logs", c.get("loadgen_logs") or "", "the folder your harness writes its LoadGen logs into"))
            cc = {"scenario": "SingleStream | MultiStream | Server | Offline", "duration_s": "expected run length (s), for progress"}
            for k, v in c.items():
                if k not in ("command", "loadgen_logs"):
                    out.append(_line(2, k, v, cc.get(k)))
            return out
        w = self.loadgen
        if self.workload_type != "loadgen":
            out.append(_line(2, "type", self.workload_type))
        else:
            out.append(_line(2, "type", "loadgen", "the real MLPerf LoadGen, in a worker process"))
        out.append(_line(2, "sut", w.get("sut"), "null | sleep | matmul | python:MODULE:FUNCTION"))
        out.extend(_mapping(2, "sut_options", w.get("sut_options") or {}))
        comments = {
            "scenario": "SingleStream | MultiStream | Server | Offline",
            "duration_s": "LoadGen min_duration (s); MLPerf submissions need 600",
            "target_qps": "Offline/Server: auto = measured from the SUT before the run",
            "expected_latency_ms": "SingleStream/MultiStream: auto = measured",
            "latency_bound_ms": "Server: the p99 latency bound",
        }
        for k, v in w.items():
            if k in ("sut", "sut_options"):
                continue
            out.append(_line(2, k, v, comments.get(k)))
        if w.get("scenario") == "Server" and "latency_bound_ms" not in w:
            out.append(_line(2, "latency_bound_ms", 100.0, comments["latency_bound_ms"]))
        return out

    def issues(self, section: str | None = None) -> list[ProfileIssue]:
        """The loader's findings on the profile as it stands (one section's, or all).

        section: "sources" | "workload" | "procedure" | "meta" (name, description, ...)."""
        text = self.text(placeholder=section not in (None, "sources"))
        try:
            parse_profile_text(text.encode("utf-8"), str(self.path))
        except ProfileError as exc:
            found = exc.issues
        else:
            return []
        if section is None:
            return found

        def belongs(issue: ProfileIssue) -> bool:
            head = issue.path.split(".")[0].split("[")[0]
            if not head:
                return True  # about the whole profile (e.g. two sources with one name)
            if section == "meta":
                return head in SECTION_OF_META
            return head == section

        return [i for i in found if belongs(i)]

    def write(self, path: str | Path | None = None, force: bool = False):
        """Write the profile and load it back; refuses to overwrite unless `force`."""
        if path is not None:
            self.target = Path(path)
        if not self.sources:
            raise WizardError("no source chosen: pick at least one (the simulated bench works without hardware)")
        issues = self.issues()
        if issues:
            raise WizardError("the profile has mistakes:\n" + "\n".join(str(i) for i in issues), issues)
        target = self.path
        try:
            if target.exists() and not force:
                raise WizardError(f"{target}: a profile is already there; choose another name or path, or overwrite it with --force")
            if target.exists() and target.is_dir():
                raise WizardError(f"{target}: is a folder; give a file name such as {target / 'bench.yaml'}")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(self.text(), encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:  # a name too long, a file where a folder is needed, no permission
            raise WizardError(describe_oserror(exc.filename or target, exc)) from None
        return load_profile(target)
