#!/usr/bin/env python3
"""Check the `nvml` driver on a machine with NVIDIA GPUs (run once, by hand; CI has no GPU).

    .venv/bin/python tools/nvml_check.py [--seconds 10] [--interval 0.1] [--gpus 0,GPU-...] [--json OUT]

It opens the GPUs through labconsole's driver and prints:
 1. identity: each GPU's name, UUID, serial, architecture, PCI bus id, power limit, the driver version;
 2. how each GPU's watts are read (counter / instant / average, the NVML call, the scope) and why
    the others were not used;
 3. each sensor's measured update period (Zeus's method: tight polling, smallest interval between changes);
 4. for 3 s, every power reading NVML offers side by side (energy-counter watts, the instant and
    average fields, nvmlDeviceGetPowerUsage), read directly, to confirm the labels on this GPU;
 5. `--seconds` of samples through the driver as a run records them: samples per second, invalid
    samples, and whether the cumulative energy agrees with the mean watts.
Exit status 0 when every check passes, 1 when one fails, 2 when the GPUs cannot be opened.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labconsole.samples.batch import OK  # noqa: E402
from labconsole.sources.base import SourceError  # noqa: E402
from labconsole.sources.nvml import NvmlOptions, NvmlSource  # noqa: E402


def _gpu_refs(text: str | None):
    if not text:
        return None
    return [int(p) if p.strip().isdigit() else p.strip() for p in text.split(",") if p.strip()]


def side_by_side(nv, handle, seconds: float = 3.0, step: float = 0.1) -> dict:
    """Every power reading NVML offers for one GPU, polled together (mean of each, in W)."""
    readings: dict[str, list[float]] = {"counter": [], "instant_field": [], "average_field": [], "usage": []}
    errors: dict[str, str] = {}
    last = None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.monotonic()
        try:
            mj = nv.nvmlDeviceGetTotalEnergyConsumption(handle)
            if last is not None and mj != last[1]:
                readings["counter"].append((mj - last[1]) / 1000.0 / (t - last[0]))
            if last is None or mj != last[1]:
                last = (t, mj)
        except nv.NVMLError as exc:
            errors["counter"] = str(exc)
        for key, fid in (("instant_field", getattr(nv, "NVML_FI_DEV_POWER_INSTANT", None)), ("average_field", getattr(nv, "NVML_FI_DEV_POWER_AVERAGE", None))):
            if fid is None:
                errors[key] = "not in this nvidia-ml-py"
                continue
            try:
                v = nv.nvmlDeviceGetFieldValues(handle, [(fid, nv.NVML_POWER_SCOPE_GPU)])[0]
                if v.nvmlReturn == nv.NVML_SUCCESS:
                    readings[key].append(v.value.uiVal / 1000.0)
                else:
                    errors[key] = str(nv.NVMLError(v.nvmlReturn))
            except nv.NVMLError as exc:
                errors[key] = str(exc)
        try:
            readings["usage"].append(nv.nvmlDeviceGetPowerUsage(handle) / 1000.0)
        except nv.NVMLError as exc:
            errors["usage"] = str(exc)
        time.sleep(step)
    means = {k: (sum(v) / len(v) if v else None) for k, v in readings.items()}
    return {"mean_w": means, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to record through the driver (default 10)")
    ap.add_argument("--interval", type=float, default=0.1, help="sample interval (default 0.1 s)")
    ap.add_argument("--gpus", help="comma-separated NVML indices or UUIDs (default: all)")
    ap.add_argument("--power", default="auto", choices=["auto", "counter", "instant", "average", "usage"])
    ap.add_argument("--json", help="also write everything measured to this file")
    args = ap.parse_args(argv)

    report: dict = {"checks": []}
    failures = 0

    def check(ok: bool, what: str) -> None:
        nonlocal failures
        failures += 0 if ok else 1
        report["checks"].append({"ok": ok, "what": what})
        print(f"  [{'PASS' if ok else 'FAIL'}] {what}")

    src = NvmlSource("gpus", NvmlOptions(gpus=_gpu_refs(args.gpus), power=args.power, inference_s=1.0), sample_interval_s=args.interval)
    try:
        src.open()
    except SourceError as exc:
        print(f"cannot open the GPUs: {exc}", file=sys.stderr)
        return 2
    try:
        ident = src.identify()
        caps = src.capabilities()
        report["identity"] = ident.as_dict()
        report["capabilities"] = caps.as_dict()
        print(f"NVIDIA driver {ident.extra.get('driver_version')}, NVML {ident.extra.get('nvml_version')}")
        print("\n1-3. GPUs, how their power is read, update periods")
        for g in ident.extra["gpus"]:
            up = g.get("update_period") or {}
            period = f"{up['period_s'] * 1000:.1f} ms (median {up['median_s'] * 1000:.1f} ms, {up['changes']} changes, poll gap {up['poll_gap_s'] * 1000:.2f} ms)" if up.get("period_s") else "not measured"
            print(f"  GPU {g['gpu_index']}: {g['name']}  UUID {g['uuid']}  s/n {g['serial'] or '-'}  {g['architecture']}  PCI {g['pci_bus_id']}  limit {g['power_limit_w']} W")
            print(f"      watts: {g['power_kind']} from {g['method']} (scope {g['scope']})")
            for m, why in g["not_used"].items():
                print(f"      not used: {m}: {why}")
            for w in g["warnings"]:
                print(f"      warning: {w}")
            print(f"      update period: {period}")
            check(g["power_kind"] in ("counter", "instant", "average"), f"GPU {g['gpu_index']}: power is labelled ({g['power_kind']})")
            check(bool(up.get("period_s")) and 0.001 <= up["period_s"] <= 1.0, f"GPU {g['gpu_index']}: an update period between 1 ms and 1 s was measured")

        print("\n4. every NVML power reading side by side (3 s each, read directly)")
        nv = src._nv
        report["side_by_side"] = {}
        for g in src._gpus:
            sbs = side_by_side(nv, g.handle)
            report["side_by_side"][g.channel] = sbs
            shown = "  ".join(f"{k} {v:.1f} W" for k, v in sbs["mean_w"].items() if v is not None)
            print(f"  GPU {g.index}: {shown}")
            for k, why in sbs["errors"].items():
                print(f"      {k}: {why}")
            vals = [v for v in sbs["mean_w"].values() if v is not None]
            if len(vals) >= 2:
                spread = (max(vals) - min(vals)) / max(vals) * 100 if max(vals) > 0 else 0.0
                check(spread < 10.0, f"GPU {g.index}: the readings agree within 10 % on a steady load (spread {spread:.1f} %)")

        print(f"\n5. {args.seconds:g} s through the driver at {args.interval:g} s")
        rows: dict[str, list] = {ch: [] for ch in caps.channels}
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            for b in src.read(2.0):
                rows[b.channel].extend(b.samples.tolist())
        elapsed = time.monotonic() - t0
        report["samples"] = {}
        for ch, samples in rows.items():
            good = [s for s in samples if s[-1] == OK and not math.isnan(s[2])]
            rate = len(samples) / elapsed
            mean_w = sum(s[2] for s in good) / len(good) if good else float("nan")
            entry = {"samples": len(samples), "valid": len(good), "per_s": rate, "mean_w": mean_w}
            print(f"  {ch}: {len(samples)} samples ({rate:.1f}/s), {len(samples) - len(good)} invalid, mean {mean_w:.2f} W")
            check(len(good) >= 0.9 * len(samples) > 0, f"{ch}: at least 90 % valid samples")
            energies = [s[6] for s in good if not math.isnan(s[6])]
            if len(energies) >= 2:
                span_s = (good[-1][1] - good[0][1]) / 1e9
                counter_w = (energies[-1] - energies[0]) / span_s if span_s > 0 else float("nan")
                entry["counter_avg_w"] = counter_w
                monotonic = all(b >= a for a, b in zip(energies, energies[1:]))
                check(monotonic, f"{ch}: cumulative energy never decreases")
                agree = abs(counter_w - mean_w) / counter_w * 100 if counter_w > 0 else float("inf")
                check(agree < 3.0, f"{ch}: energy over time ({counter_w:.2f} W) agrees with the mean of the watts within 3 % ({agree:.2f} %)")
            report["samples"][ch] = entry
    finally:
        src.close()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        print(f"\nwritten: {args.json}")
    print("\nALL CHECKS PASSED" if failures == 0 else f"\n{failures} CHECK(S) FAILED")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
