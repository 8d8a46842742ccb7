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
    load = f"load average {m.get('loadavg_at_start')} at start, {m.get('loadavg_at_end')} at end"
    lines = [
        f"<!-- bench:{result.name}:begin -->",
        f"### {result.number}. {result.title}",
        "",
        f"Run {result.started_utc}{' (--quick)' if result.quick else ''}, {result.duration_s:.0f} s; {load}.",
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
        f"LoadGen {v.get('mlperf_loadgen')}. Written by `python -m bench{' --quick' if quick else ''} --record`.\n\n"
    )
    ordered = [sections[s.name] for s in BENCHMARKS if s.name in sections]
    path.write_text(head + BEGIN + intro + "\n".join(ordered) + END + tail, encoding="utf-8")
    return path
