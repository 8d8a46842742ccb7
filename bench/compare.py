"""Before and after: the figures of two result folders side by side, as a markdown table.

    python -m bench.compare BEFORE_DIR AFTER_DIR [NAME ...]

Both folders hold `NAME.json` files written by `python -m bench --out DIR` (run the "before"
one with an older labconsole first on PYTHONPATH). Figures are matched by their name, with
the stream format in parentheses ignored, so "(csv)" before and "(bin)" after line up.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from bench.core import fmt


def _key(figure: str) -> str:
    return re.sub(r"\s*\((csv|bin|binary)[^)]*\)", "", figure).strip()


def compare(before: Path, after: Path, names: list[str] | None = None) -> str:
    lines = ["| benchmark | figure | before | after | after / before | ratio to anchor, before | after |", "|---|---|---|---|---|---|---|"]
    for path in sorted(after.glob("*.json")):
        name = path.stem
        if names and name not in names:
            continue
        old_path = before / path.name
        if not old_path.exists():
            continue
        new, old = json.loads(path.read_text()), json.loads(old_path.read_text())
        old_rows = {_key(r["figure"]): r for r in old["rows"]}
        for r in new["rows"]:
            o = old_rows.get(_key(r["figure"]))
            if o is None or o["value"] is None or r["value"] is None:
                continue
            ratio = r["value"] / o["value"] if o["value"] else None
            ra, rb = o.get("ratio"), r.get("ratio")
            lines.append(f"| {name} | {r['figure']} | {fmt(o['value'], o['unit'])} | {fmt(r['value'], r['unit'])} | "
                         f"{f'{ratio:.3g}' if ratio is not None else '-'} | {f'{ra:.3g}' if ra is not None else '-'} | {f'{rb:.3g}' if rb is not None else '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    print(compare(Path(argv[0]), Path(argv[1]), argv[2:] or None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
