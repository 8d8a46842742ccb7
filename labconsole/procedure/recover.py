"""Recovering a bundle a crash left unsealed: seal what is on disk, marked `recovered`."""

from __future__ import annotations

import json
from pathlib import Path

from labconsole import safefile
from labconsole.bundle.schema import problems as schema_problems
from labconsole.bundle.seal import is_sealed
from labconsole.bundle.writer import BundleWriter, iso_utc


class RecoverError(RuntimeError):
    pass


def recover(root: Path) -> str:
    root = Path(root)
    run_json = root / "data" / "run.json"
    if not run_json.exists():
        raise RecoverError(f"{root}: not a labconsole bundle (no data/run.json)")
    if is_sealed(root):
        raise RecoverError(f"{root}: already sealed; nothing to recover (`labconsole check` verifies it)")
    try:
        info = json.loads(safefile.read_text(run_json, "json", root=root))
    except ValueError as exc:  # FileRefused too: a FIFO, a device, a link out of the bundle
        raise RecoverError(f"{run_json}: unreadable ({exc}); fix or remove it first") from None
    wrong = schema_problems(run_json, info)
    if wrong:
        raise RecoverError(f"{wrong[0]}; fix or remove it first")
    previous = info.get("exit_status")
    writer = BundleWriter(root)
    writer.run_info = info
    # Leftover temporary files from an interrupted atomic write are not part of the record.
    for tmp in (root / "data").rglob("*.tmp"):
        tmp.unlink()
    reason = f"the console stopped without sealing (last status '{previous}'); recovered what was flushed to disk"
    writer.update_run(recovered_at=iso_utc(), stop=info.get("stop") or None)
    try:
        from labconsole.mlperf.summary import summarise

        report, check_list = summarise(root)
        writer.write_json("summary.json", {"report": report, "checks": check_list, "recovered": True})
    except Exception as exc:  # noqa: BLE001 - sealing what is there matters more than the summary
        reason += f"; analysis failed: {exc}"
    writer.seal("recovered", reason)
    return f"sealed {root} as recovered"
