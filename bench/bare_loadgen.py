"""Bare LoadGen with a zero-work SUT: the anchor of the harness benchmark.

    python -m bench.bare_loadgen CONFIG.json

The pattern measured in reference/loadgen.md (section 5, Appendix A): the SUT completes every
sample inside the issue callback, Offline in chunks of 10,000; trace off; the audit.config
path points nowhere. The settings are the ones labconsole's worker would use for the same
config (scenario, min duration and query count, seeds, target QPS, latency bound), so the two
differ only in what labconsole adds. Writes LoadGen's logs into the config's `outdir`, and on
stdout the CPU and wall time of the test itself, {"test_cpu_s": ..., "test_wall_s": ...}.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as fh:
        cfg = json.load(fh)
    import mlperf_loadgen as lg

    def issue_queries(samples):
        for i in range(0, len(samples), 10000):
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples[i : i + 10000]])

    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, cfg["scenario"])
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms = int(round(cfg["duration_s"] * 1000))
    ts.min_query_count = int(cfg["min_query_count"])
    seeds = cfg["seeds"]
    ts.qsl_rng_seed, ts.sample_index_rng_seed, ts.schedule_rng_seed = int(seeds["qsl"]), int(seeds["sample_index"]), int(seeds["schedule"])
    if cfg["scenario"] == "Offline":
        ts.offline_expected_qps = float(cfg["target_qps"])
    else:
        ts.server_target_qps = float(cfg["target_qps"])
        ts.server_target_latency_ns = int(cfg["latency_bound_ms"] * 1e6)
    ts.server_num_issue_query_threads = 0
    os.makedirs(cfg["outdir"], exist_ok=True)
    lo = lg.LogOutputSettings()
    lo.outdir = cfg["outdir"]
    lo.copy_summary_to_stdout = False
    ls = lg.LogSettings()
    ls.log_output = lo
    ls.enable_trace = False
    sut = lg.ConstructSUT(issue_queries, lambda: None)
    qsl = lg.ConstructQSL(int(cfg["total_sample_count"]), int(cfg["performance_sample_count"]), lambda i: None, lambda i: None)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    lg.StartTestWithLogSettings(sut, qsl, ts, ls, os.path.join(cfg["outdir"], "no-audit-config", "audit.config"))
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(json.dumps({"test_cpu_s": cpu, "test_wall_s": t1 - t0}), flush=True)
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
