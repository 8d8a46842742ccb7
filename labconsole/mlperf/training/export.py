"""A labconsole Training session written in the official submission layout:

    <DIR>/<org>/results/<system>/<benchmark>/result_<k>.txt, power/result_<k>/node_<i>.txt, sw_<j>.txt
    <DIR>/<org>/systems/<system>.json

The result and power logs are the bundle's own, copied byte for byte (the bundle already keeps
them in this layout); the system description is the submitter's to write: given with
`--system-json`, copied as it is; otherwise a skeleton to fill in, which the package checker
will not accept until it is.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from labconsole.bundle.seal import verify
from labconsole.mlperf.training.folder import find_training_folder

SYSTEM_SKELETON_FIELDS = ("submitter", "division", "status", "system_name", "number_of_nodes",
                          "host_processors_per_node", "host_processor_model_name", "host_processor_core_count",
                          "accelerators_per_node", "accelerator_model_name", "framework")


class TrainingExportError(ValueError):
    pass


@dataclass
class TrainingExport:
    out_dir: Path
    benchmark_dir: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def export_training(bundle: Path, out_dir: Path, org: str = "labconsole", system_json: Path | None = None) -> TrainingExport:
    bundle, out_dir = Path(bundle), Path(out_dir)
    src = find_training_folder(bundle)
    if src is None or not (bundle / "data" / "training").is_dir():
        raise TrainingExportError(f"{bundle}: not a labconsole bundle of a Training run (no data/training/results)")
    check = verify(bundle)
    if not check.ok:
        raise TrainingExportError(f"{bundle}: the bundle does not verify, so its logs are not evidence: "
                                  + "; ".join(check.problems[:3]))
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise TrainingExportError(f"{out_dir}: exists and is not an empty folder")
    system, benchmark = src.parent.name, src.name
    if not org or "/" in org or org.startswith("."):
        raise TrainingExportError(f"--org {org!r}: a folder name")
    dest = out_dir / org / "results" / system / benchmark
    shutil.copytree(src, dest, symlinks=False)
    res = TrainingExport(out_dir=out_dir, benchmark_dir=dest, files=sorted(p for p in dest.rglob("*") if p.is_file()))
    systems = out_dir / org / "systems"
    systems.mkdir(parents=True)
    target = systems / f"{system}.json"
    if system_json is not None:
        try:
            json.loads(Path(system_json).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            shutil.rmtree(out_dir / org)
            raise TrainingExportError(f"{system_json}: not a readable JSON system description ({exc})") from None
        shutil.copyfile(system_json, target)
    else:
        skeleton = {k: "" for k in SYSTEM_SKELETON_FIELDS}
        skeleton.update(submitter=org, division="closed", system_name=system)
        target.write_text(json.dumps(skeleton, indent=4) + "\n", encoding="utf-8")
        res.notes.append(f"{target}: a skeleton; fill in the system description before running the package checker")
    res.files.append(target)
    return res
