"""`python -m bench --record`: put this run's tables into bench/RESULTS.md.

Only the part between the markers below is rewritten (from the results just measured, never by
hand); the notes around it (what limits each figure, before/after) are kept. Benchmarks not
run this time keep their last recorded section.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.core import BENCH_DIR, BENCHMARKS, Result, markdown_table

RESULTS_MD = BENCH_DIR / "RESULTS.md"
BEGIN = "<!-- bench:generated:begin -->"
END = "<!-- bench:generated:end -->"
SECTION = re.compile(r"<!-- bench:(?P<name>[a-z]+):begin -->\n.*?<!-- bench:(?P=name):end -->\n?", re.S)


def section(result: Result) -> str:
    m = result.machine
    spec = next((s for s in BENCHMARKS if s.name == result.name), None)
    number = spec.number if spec is not None else result.number  # the list in bench/core.py numbers them
    load = f"load average {m.get('loadavg_at_start')} at start, {m.get('loadavg_at_end')} at end"
    at = f" at {m['commit']}" if m.get("commit") else ""
    lines = [
        f"<!-- bench:{result.name}:begin -->",
        f"### {number}. {result.title}",
        "",
        f"Run {result.started_utc}{at}{' (--quick)' if result.quick else ''}, {result.duration_s:.0f} s; {load}.",
        "",
        markdown_table(result),
        "",
    ]
    for row in result.rows:
        if row.note:
            lines.append(f"- {row.figure}: {row.note}")
    lines += [f"- {note}" for note in result.notes]
    lines.append(f"<!-- bench:{result.name}:end -->")
    return "\n".join(lines) + "\n"


def record(results: list[Result], machine: dict, quick: bool, path: Path = RESULTS_MD) -> Path:
    text = path.read_text(encoding="utf-8") if path.exists() else f"# Benchmark results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    body, tail = rest.split(END, 1)
    sections = {m.group("name"): m.group(0) for m in SECTION.finditer(body)}
    for r in results:
        sections[r.name] = section(r)
    v = machine.get("versions", {})
    intro = (
        f"\nMachine: {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('memory_gb')} GB, "
        f"{machine.get('os')}; Python {v.get('python')}, numpy {v.get('numpy')}, pandas {v.get('pandas')}, "
        f"LoadGen {v.get('mlperf_loadgen')}. Written by `python -m bench{' --quick' if quick else ''} --record`; "
        "a section not run again keeps its last run, so each says when it ran and, where recorded, at which commit "
        "(`git log -p bench/RESULTS.md` for the others).\n\n"
    )
    ordered = [sections[s.name] for s in BENCHMARKS if s.name in sections]
    path.write_text(head + BEGIN + intro + "\n".join(ordered) + END + tail, encoding="utf-8")
    return path


def fill(name: str, text: str, path: Path = RESULTS_MD) -> None:
    """Replace what lies between `<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->`
    (or a bare `<!-- NAME -->` placeholder) with `text`."""
    doc = path.read_text(encoding="utf-8")
    block = f"<!-- bench:{name}:begin -->\n{text.rstrip()}\n<!-- bench:{name}:end -->"
    pat = re.compile(rf"<!-- bench:{name}:begin -->.*?<!-- bench:{name}:end -->", re.S)
    if pat.search(doc):
        doc = pat.sub(lambda _m: block, doc)
    elif f"<!-- {name} -->" in doc:
        doc = doc.replace(f"<!-- {name} -->", block)
    else:
        raise KeyError(f"{path}: no place for {name}")
    path.write_text(doc, encoding="utf-8")


def icount_table(before: Path, after: Path) -> str:
    import json

    def load(p: Path) -> dict:
        out = {}
        if p.exists():
            for line in p.read_text().splitlines():
                d = json.loads(line)
                if "per_sample" in d:
                    out[d["op"]] = d["per_sample"]
        return out

    b, a = load(before), load(after)
    names = {"csv_write": "CSV stream: append + flush", "csv_read": "CSV stream: read back", "bin_write": "binary stream: append + flush",
             "bin_read": "binary stream: read back", "stats": "recorder segment statistics (1 k batches)", "window": "power-window average"}
    lines = ["| operation | before | after | after / before |", "|---|---|---|---|"]
    for op, label in names.items():
        if op not in a and op not in b:
            continue
        bv, av = b.get(op), a.get(op)
        ratio = f"{av / bv:.3g}" if av is not None and bv else "-"
        lines.append(f"| {label} | {f'{bv:,.0f}' if bv is not None else '-'} | {f'{av:,.0f}' if av is not None else '-'} | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    """`python -m bench.record`: refill the before/after and instruction-count tables."""
    from bench.compare import compare
    from bench.core import RESULTS_DIR

    fill("before-after", compare(RESULTS_DIR / "before-quick", RESULTS_DIR / "after-quick"))
    if (RESULTS_DIR / "before-2").is_dir() and (RESULTS_DIR / "after-2").is_dir():  # part 2: plots
        fill("before-after-2", compare(RESULTS_DIR / "before-2", RESULTS_DIR / "after-2"))
    exp = RESULTS_DIR / "experiments"
    fill("icount", icount_table(exp / "icount-before.jsonl", exp / "icount-after.jsonl"))
    print(f"filled {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
