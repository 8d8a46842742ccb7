"""A Tiny report as text, laid out as the runners print theirs (`report` without --json)."""

from __future__ import annotations


def _clean(text: str) -> str:
    # Text from a result folder goes to a terminal: control characters escaped.
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


def render_report(rep: dict) -> str:
    lines = [f"{_clean(rep['path'])} (MLPerf Tiny energy, {rep['source']}{' layout of the MLCommons runner' if rep['source'] == 'labconsole' else ' runner' if rep['source'] == 'mlcommons' else ''})"]
    dut = rep.get("dut") or {}
    if dut:
        lines.append("  DUT: " + ", ".join(f"{k} {_clean(v)}" for k, v in dut.items()))
    for w in rep["windows"]:
        lines.append(
            f"  window {w['index'] + 1}: {w['energy_uj']:14.3f} uJ  {w['power_uw'] / 1000:9.4f} mW  {w['uj_per_inf']:11.3f} uJ/inf  "
            f"{w['inferences']:6d} inf  {w['runtime_s']:8.3f} s  {w['throughput_inf_s']:9.3f} inf/s"
        )
    m = rep["metric"]
    if m:
        lines.append(f"  metric: median {m['name']} = {m['value']:g} {m['unit']} over {m['windows']} window(s)")
    else:
        lines.append("  metric: none (no window)")
    if rep.get("median_throughput_inf_s") is not None:
        lines.append(f"  median throughput: {rep['median_throughput_inf_s']:.3f} inf/s")
    pub = rep.get("published")
    if pub:
        verdict = "matches" if pub["matches"] else "DIFFERS from"
        lines.append(f"  {verdict} results.txt: {pub['median_uj_per_inf']} uJ/inf ({pub['delta_pct']:+.4f} %, tolerance {pub['tolerance']})")
    if rep.get("voltage_v"):
        lines.append(f"  supply: {rep['voltage_v']:g} V; {rep['samples']} samples at {rep['sample_rate_hz']:g} Hz")
    for p in rep.get("problems") or []:
        lines.append(f"  problem: {_clean(p)}")
    return "\n".join(lines)
