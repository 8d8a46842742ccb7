"""Run the same measurement again from a bundle alone (`labconsole run --from BUNDLE`).

A bundle holds what a rerun needs: the profile as used (`data/profile.yaml`), the overrides
and effective scenario and duration, the workload and procedure with every default filled in
(`run.json`; a later labconsole may have other defaults), the seeds, and the `auto` LoadGen
values the first run measured (`workload_resolved`), which a rerun reuses so the SUT is
driven at the same rate (`remeasure=True` probes the SUT again instead).

Before anything is recorded, `probe_bench` opens each source once (starting its emulator
where the profile asks for one), and `check_bench` compares the bench now with the bench
then (`labconsole.bundle.environment_diff`): a source that is gone is an error, a different serial or
version a warning; the differences go into the new bundle's `run.json` as `rerun_of`.
UI-free: the CLI and the TUI drive the same steps.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from labconsole import safefile
from labconsole.bundle.schema import problems as schema_problems
from labconsole.bundle import environment
from labconsole.bundle.environment_diff import ERROR, INFO, WARNING, Difference, diff_environments
from labconsole.bundle.seal import is_sealed, verify
from labconsole.profile import LoadedProfile, Profile, ProfileError, parse_profile_text


class RerunError(Exception):
    """The bundle cannot be rerun (the message says why and what to do)."""


@dataclass
class RerunPlan:
    bundle: Path
    run_info: dict[str, Any]  # the original run.json
    environment: dict[str, Any]  # the original environment.json ({} when absent)
    loaded: LoadedProfile  # the profile as used, workload and procedure as recorded
    overrides: dict[str, Any]  # the original --scenario/--duration (None where not given)
    scenario: str
    duration_s: float
    resolved: dict[str, Any] | None  # `auto` values to reuse; None: probe the SUT again
    notes: list[Difference] = field(default_factory=list)  # about the bundle itself

    def run_options(self, differences: list[Difference], out_dir: Path | None = None, operator: str | None = None):
        """RunOptions for RunEngine that repeat this measurement and record where it came from."""
        from labconsole.procedure.engine import RunOptions

        return RunOptions(
            scenario=self.overrides.get("scenario"),
            duration_s=self.overrides.get("duration_s"),
            out_dir=out_dir,
            operator=operator,
            resolved=self.resolved,
            run_info={"rerun_of": self.rerun_of(differences)},
        )

    def rerun_of(self, differences: list[Difference]) -> dict[str, Any]:
        return {
            "id": self.run_info.get("id"),
            "bundle": str(self.bundle),
            "start": self.run_info.get("start"),
            "exit_status": self.run_info.get("exit_status"),
            "profile_sha256": (self.run_info.get("profile") or {}).get("sha256"),
            "reused_settings": self.resolved,
            "differences": [d.as_dict() for d in differences],
        }


def _read_json(path: Path, what: str) -> dict:
    if not path.exists():
        raise RerunError(f"{path}: missing; {what}")
    try:
        # a regular file inside the bundle only, of a bounded size (a FIFO would block)
        obj = json.loads(safefile.read_text(path, "json", root=path.parent.parent))
    except ValueError as exc:
        raise RerunError(f"{path}: unreadable ({exc})") from None
    wrong = schema_problems(path, obj)
    if wrong:
        raise RerunError(wrong[0])
    return obj


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def plan_rerun(bundle: str | Path, remeasure: bool = False) -> RerunPlan:
    """Read what a rerun needs from a bundle; raises RerunError when something is missing."""
    root = Path(bundle)
    if not root.is_dir():
        raise RerunError(f"{root}: no such bundle folder")
    data = root / "data"
    if not (data / "run.json").exists():
        raise RerunError(f"{root}: not a labconsole bundle (no data/run.json); --from reruns bundles, not MLPerf result folders")
    notes: list[Difference] = []
    if is_sealed(root):
        v = verify(root)
        if v.problems:
            raise RerunError(f"{root}: the bundle was changed after it was sealed ({'; '.join(v.problems[:3])}); a rerun would not repeat what was recorded")
    else:
        notes.append(Difference(WARNING, "bundle.seal", None, None, "the bundle is not sealed: its files cannot be verified against their checksums"))
    run = _read_json(data / "run.json", "the bundle records no run")
    env = {}
    if (data / "environment.json").exists():
        env = _read_json(data / "environment.json", "")
    prof_path = data / "profile.yaml"
    if not prof_path.exists():
        raise RerunError(f"{prof_path}: missing; the bundle does not hold the profile it used")
    try:
        raw = safefile.read_bytes(prof_path, "profile", root=root)
    except safefile.FileRefused as exc:
        raise RerunError(str(exc)) from None
    try:
        profile, lines, text = parse_profile_text(raw, str(prof_path))
    except ProfileError as exc:
        raise RerunError(f"the bundle's profile no longer loads with this labconsole:\n{exc}") from None

    # The workload and procedure exactly as recorded: defaults may differ in this version.
    merged = profile.model_dump(mode="json")
    for section in ("workload", "procedure"):
        recorded = run.get(section)
        if not isinstance(recorded, dict):
            notes.append(Difference(WARNING, section, None, None, f"run.json records no {section}; using the profile's with this version's defaults"))
            continue
        now = _flatten(merged[section])
        for k, v in _flatten(recorded).items():
            if now.get(k, v) != v:
                notes.append(Difference(INFO, f"{section}.{k}", v, now.get(k), f"{section}.{k}: the profile gives {now.get(k)!r} with this version's defaults; using the recorded {v!r}"))
        merged[section] = recorded
    try:
        profile = Profile.model_validate(merged)
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)[:5])
        raise RerunError(f"{data / 'run.json'}: the recorded workload/procedure is not valid for this labconsole ({errs})") from None
    loaded = LoadedProfile(profile=profile, path=prof_path, text=text, sha256=hashlib.sha256(raw).hexdigest(), lines=lines)

    overrides = dict(run.get("overrides") or {})
    overrides = {"scenario": overrides.get("scenario"), "duration_s": overrides.get("duration_s")}
    scenario = overrides["scenario"] or profile.workload.scenario
    duration_s = float(overrides["duration_s"] or profile.workload.duration_s)
    if run.get("scenario") not in (None, scenario) or (run.get("duration_s") is not None and float(run["duration_s"]) != duration_s):
        raise RerunError(
            f"{data / 'run.json'}: inconsistent: it records {run.get('scenario')} for {run.get('duration_s')} s, "
            f"but its profile and overrides give {scenario} for {duration_s:g} s"
        )
    resolved = None
    recorded = run.get("workload_resolved")
    if isinstance(recorded, dict) and not remeasure:
        resolved = {k: v for k, v in recorded.items() if k in ("target_qps", "expected_latency_ms") and isinstance(v, (int, float))}
        resolved = resolved or None
    if run.get("exit_status") != "completed":
        notes.append(Difference(INFO, "original.exit_status", run.get("exit_status"), None, f"the original run ended {run.get('exit_status')}: {run.get('reason') or 'no reason recorded'}"))
    if remeasure and isinstance(recorded, dict):
        notes.append(Difference(INFO, "workload_resolved", recorded, None, "re-measuring the SUT for the 'auto' LoadGen settings instead of reusing the recorded ones"))
    return RerunPlan(root, run, env, loaded, overrides, scenario, duration_s, resolved, notes)


def probe_bench(profile: Profile) -> dict[str, Any]:
    """The bench now: each source opened once, identified and closed; host and software."""
    from labconsole.procedure.engine import open_source, source_entry

    found = []
    for spec in profile.sources:
        try:
            opened = open_source(spec)
        except Exception as exc:  # noqa: BLE001 - an absent source is a finding, not a crash
            found.append(source_entry(spec, error=exc))
            continue
        try:
            found.append(source_entry(spec, opened))
        finally:
            opened.close()
    return environment.collect(found)


def check_bench(plan: RerunPlan, now_env: dict[str, Any]) -> list[Difference]:
    """The bundle's own notes plus every difference between the bench then and now."""
    diffs = list(plan.notes) + diff_environments(plan.environment, now_env, missing_source=ERROR)
    then_cwd = plan.run_info.get("cwd")
    wl = plan.loaded.profile.workload
    depends_on_cwd = getattr(wl, "type", "") == "command" or str(getattr(wl, "sut", "")).startswith("python:")
    if then_cwd and then_cwd != str(Path.cwd()):
        diffs.append(
            Difference(WARNING if depends_on_cwd else INFO, "cwd", then_cwd, str(Path.cwd()),
                       f"working folder: {then_cwd} -> {Path.cwd()}" + (" (the workload resolves its files from here)" if depends_on_cwd else ""))
        )
    order = {ERROR: 0, WARNING: 1, INFO: 2}
    diffs.sort(key=lambda d: order.get(d.severity, 9))
    return diffs


def refusal(diffs: list[Difference]) -> str | None:
    """Why the rerun must not start (the errors, one per line), or None."""
    errors = [d for d in diffs if d.severity == ERROR]
    if not errors:
        return None
    return "cannot rerun: the bench differs from the recorded one in ways that make it a different measurement:\n" + "\n".join(f"  {d.message}" for d in errors)
