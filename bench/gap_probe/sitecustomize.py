"""Loaded by `python -m bench.issue_gaps` only, through PYTHONPATH, into bare LoadGen and into
labconsole's worker alike: notes when LoadGen's issue callback runs, so that the times the
issue thread was away for over a millisecond can be counted. Nothing in labconsole changes:
LoadGen's ConstructSUT and StartTestWithLogSettings are wrapped where both ways look them up.

At 10 k QPS LoadGen's Server schedule (Poisson, a mean gap of 0.1 ms) leaves a natural gap of
over 1 ms once in e^10 = 22,000 queries, of over 2 ms once in 5e8; at 100 k QPS never."""

import os

_PATH = os.environ.get("LABCONSOLE_BENCH_GAPS")

if _PATH:
    import json
    import time
    from array import array

    import mlperf_loadgen as _lg

    _stamps = array("q")
    _construct, _start = _lg.ConstructSUT, _lg.StartTestWithLogSettings

    def _construct_sut(issue, flush):
        note, clock = _stamps.append, time.perf_counter_ns

        def issue_noted(samples):
            note(clock())
            issue(samples)

        return _construct(issue_noted, flush)

    def _start_test(*args):
        del _stamps[:]
        try:
            return _start(*args)
        finally:
            s = _stamps
            gaps = [(s[i - 1], s[i]) for i in range(1, len(s)) if s[i] - s[i - 1] > 1_000_000]
            with open(_PATH, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"calls": len(s), "span_ns": (s[-1] - s[0]) if s else 0, "gaps": gaps}) + "\n")

    _lg.ConstructSUT, _lg.StartTestWithLogSettings = _construct_sut, _start_test
