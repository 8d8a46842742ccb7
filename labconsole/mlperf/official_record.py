"""A bundle of an official run: power-dev's session folder kept inside it, and the verdicts on it.

An official run's bundle holds the client's session folder byte for byte in
`data/official/<session>/` (power/, ranging/, run_1/), next to labconsole's own samples, events
and environment. Its figures and checks are the official folder's: `report` reads that folder,
`check` runs labconsole's checks on it plus the bundle's own seal, and, when power-dev is at
hand, power-dev's compliance/check.py on the same folder, the two verdicts side by side.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from labconsole import safefile
from labconsole.bundle.reader import RunOpenError, RunRecord, open_run, scenario_name
from labconsole.bundle.seal import verify
from labconsole.mlperf import metrics
from labconsole.verdict import FAIL, PASS, CheckResult, passed
from labconsole.workload.powerdev import PowerDev, PowerDevMissing, find_powerdev

_CHECK_LINE = re.compile(r"^(?:INFO|WARNING|ERROR):main:\[(x| )\] (.+)$")


def _run_info(bundle: Path) -> dict:
    """run.json as a dict, read safely (a regular file inside the bundle, bounded); {} when it
    cannot be: the readers that need it say why."""
    try:
        info = json.loads(safefile.read_text(Path(bundle) / "data" / "run.json", kind="json", root=bundle))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _official_workload(info: dict) -> bool:
    wl = info.get("workload")
    return isinstance(wl, dict) and bool(wl.get("official"))


def official_folder(bundle: Path) -> Path | None:
    """The session folder an official run kept, or None when `bundle` is not one."""
    bundle = Path(bundle)
    info = _run_info(bundle)
    off = info.get("official")
    if not isinstance(off, dict):
        if not ((bundle / "data" / "official").is_dir() and _official_workload(info)):
            return None
        found = [p for p in (bundle / "data" / "official").iterdir() if p.is_dir()]
        return found[0] if len(found) == 1 else None
    rel = off.get("folder")
    if not rel or not isinstance(rel, str):
        return None
    folder = (bundle / "data" / rel).resolve()
    if not folder.is_relative_to((bundle / "data").resolve()) or not folder.is_dir():
        return None
    return folder


def is_official_bundle(path: Path) -> bool:
    info = _run_info(Path(path))
    return _official_workload(info) or isinstance(info.get("official"), dict)


@dataclass
class OfficialVerdict:
    """compliance/check.py's verdict, in its own words."""

    ran: bool
    passed: bool | None = None
    exit_code: int | None = None
    checks: dict[str, bool] = field(default_factory=dict)
    output: str = ""
    why_not: str = ""  # when it did not run

    def as_dict(self) -> dict:
        return {"ran": self.ran, "passed": self.passed, "exit_code": self.exit_code, "checks": self.checks, "output": self.output[-8000:], "why_not": self.why_not}


def run_compliance_check(folder: Path, powerdev: PowerDev | None = None, configured: str | None = None) -> OfficialVerdict:
    """power-dev's compliance/check.py on `folder` (read only; it writes nothing there)."""
    try:
        pd = powerdev or find_powerdev(configured)
    except PowerDevMissing as exc:
        return OfficialVerdict(False, why_not=str(exc))
    try:
        proc = subprocess.run([*pd.check, str(folder)], capture_output=True, text=True, timeout=300, env=pd.env(), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return OfficialVerdict(False, why_not=f"compliance/check.py could not run: {exc}")
    out = proc.stdout + proc.stderr
    verdicts: dict[str, bool] = {}
    for line in out.splitlines():
        m = _CHECK_LINE.match(line.strip())
        if m:
            verdicts.setdefault(m.group(2).strip(), m.group(1) == "x")
    return OfficialVerdict(True, proc.returncode == 0, proc.returncode, verdicts, out)


def open_official(bundle: Path, folder: Path, **kw) -> RunRecord:
    """The official folder as a record, filed under the scenario the run was made for (the
    profile's, which power-dev's client ran) rather than the name of the folder above it."""
    record = open_run(folder, **kw)
    try:
        info = json.loads((Path(bundle) / "data" / "run.json").read_text(encoding="utf-8"))
        run_scenario = info.get("scenario")
        record.run_info.update(exit_status=info.get("exit_status"), official_bundle=str(bundle))
    except (OSError, ValueError, AttributeError):
        run_scenario = None
    filed = scenario_name(run_scenario)
    if filed is not None:
        record.folder_scenario = record.folder_name = filed
    return record


def bundle_checks(bundle: Path, with_manifest: bool = True) -> list[CheckResult]:
    """The bundle's own integrity: its seal, and how the run ended."""
    out: list[CheckResult] = []
    info = json.loads((Path(bundle) / "data" / "run.json").read_text(encoding="utf-8"))
    if with_manifest:
        v = verify(Path(bundle))
        if not v.sealed:
            out.append(CheckResult("manifest", FAIL, v.problems[0]))
        elif v.problems:
            out.append(CheckResult("manifest", FAIL, "; ".join(v.problems)))
        else:
            out.append(CheckResult("manifest", PASS, f"sealed; {v.files_checked} payload files match their SHA-256"))
    status = info.get("exit_status")
    if status == "completed":
        out.append(CheckResult("run status", PASS, "the official run completed"))
    else:
        out.append(CheckResult("run status", FAIL, f"the official run ended '{status}': {info.get('reason') or 'no reason recorded'}"))
    off = info.get("official") or {}
    if off.get("dry_run"):
        out.append(CheckResult("submission", FAIL, "a dry run (MLPP_DEBUG): NOT for submission"))
    return out


def evaluate_bundle(bundle: Path, rules: str | None = None, with_manifest: bool = True, run_official: bool = True, configured: str | None = None) -> tuple[dict, list[CheckResult], OfficialVerdict | None]:
    """(report, labconsole's checks, the official verdict) of an official run's bundle."""
    folder = official_folder(bundle)
    results = bundle_checks(bundle, with_manifest)
    if folder is None:
        try:
            session = (json.loads((Path(bundle) / "data" / "run.json").read_text(encoding="utf-8")).get("official") or {}).get("session")
        except (OSError, ValueError, AttributeError):
            session = None
        why = (f"power-dev's session {session} ended before it wrote any file (the client writes its files at the end of a session, the server's come with the downloads)"
               if session else "power-dev's client never started a session")
        results.append(CheckResult("official folder", FAIL, f"the bundle holds no power-dev session folder (data/official/<session>/): {why}"))
        return {"official_folder": None}, results, None
    try:
        record = open_official(bundle, folder)
    except RunOpenError as exc:  # the client stopped before the folder had power/ and a run
        results.append(CheckResult("official folder", FAIL, f"the session folder the client left is incomplete: {exc}"))
        return {"official_folder": str(folder.relative_to(Path(bundle).resolve()))}, results, None
    from labconsole.mlperf import checks

    report = metrics.compute_report(record)
    report["official_folder"] = str(folder.relative_to(Path(bundle).resolve()))
    results += checks.run_checks(record, rules)
    verdict = run_compliance_check(folder, configured=configured) if run_official else None
    return report, results, verdict


def summarise_bundle(bundle: Path, with_manifest: bool = False) -> tuple[dict, list[dict]]:
    """`summary.json`'s (report, checks) for an official run (before sealing: no manifest)."""
    report, results, verdict = evaluate_bundle(bundle, with_manifest=with_manifest)
    if verdict is not None:
        report["official_check"] = verdict.as_dict()
    return report, [r.as_dict() for r in results]


# --- `labconsole report` and `labconsole check` on an official run's bundle ----------------------------


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() or ch == "\n" else "?" for ch in str(text))


def check_lines(bundle: Path, results: list[CheckResult], verdict: OfficialVerdict | None) -> tuple[list[str], bool]:
    """The text `check` prints for an official bundle (labconsole's verdicts beside the official
    checker's), and whether both passed."""
    lines = [f"official run: power-dev's session folder {official_folder(bundle)}", "labconsole's checks:"]
    for r in results:
        lines.append(f"[{r.status.upper():4}] {r.name}: {_printable(r.message)}")
    ours = passed(results)
    lines.append(f"labconsole: {'PASSED' if ours else 'FAILED'}")
    if verdict is None or not verdict.ran:
        lines.append(f"official compliance/check.py: not run ({verdict.why_not if verdict else 'no official folder'})")
        return lines, ours
    lines.append("official compliance/check.py (its own verdicts) vs labconsole's check of the same name:")
    by_name = {r.name: r.status for r in results}
    for name, ok in verdict.checks.items():
        lines.append(f"  [{'x' if ok else ' '}] {name:52} labconsole: {by_name.get(name, '-')}")
    lines.append(f"official: {'PASSED' if verdict.passed else 'FAILED'} (exit status {verdict.exit_code})")
    if not verdict.passed:
        said = [ln for ln in verdict.output.splitlines() if "ERROR" in ln or "Traceback" in ln or "Error" in ln][-8:]
        lines += ["  " + _printable(s) for s in said]
    return lines, ours and bool(verdict.passed)


def check_command(path: str, as_json: bool, rules: str | None) -> int:
    bundle = Path(path)
    report, results, verdict = evaluate_bundle(bundle, rules=rules)
    lines, ok = check_lines(bundle, results, verdict)
    if as_json:
        print(json.dumps({
            "path": str(bundle), "kind": "official-bundle", "passed": ok, "labconsole_passed": passed(results),
            "official": verdict.as_dict() if verdict else None, "checks": [r.as_dict() for r in results],
        }, indent=2, allow_nan=False, default=str))
    else:
        print("\n".join(lines))
        print("PASSED" if ok else "FAILED")
    return 0 if ok else 1


def report_record(bundle: Path):
    """The record `report` reads for an official bundle: its official folder's."""
    folder = official_folder(bundle)
    return open_official(bundle, folder, columns=metrics.REPORT_COLUMNS, read_only=True) if folder is not None else None
