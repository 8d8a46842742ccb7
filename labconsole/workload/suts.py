"""Built-in systems under test (SUTs) for the LoadGen worker, and their options.

- `null`: completes every sample inside the issue callback: the harness's ceiling.
- `sleep`: a latency model: `concurrency` lanes, each serving one sample in `latency_ms`
  (+ jitter). Deterministic capacity = concurrency / latency.
- `matmul`: real CPU work: each sample is a `size` x `size` matrix product on `threads`
  worker threads (numpy releases the GIL, so the threads really run in parallel).
- `python:MODULE:FUNCTION`: the user's own: FUNCTION(indices, **options) is called on a worker
  thread with the QSL indices of a batch of samples; when it returns they are complete.

The option models live here so the profile loader can validate `sut_options` with lines.
This module imports no numpy or LoadGen at import time; the worker does.
"""

from __future__ import annotations

import importlib
import os
import queue
import random
import sys
import threading
import time
import traceback
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field


class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class NullOptions(_Opts):
    pass


class SleepOptions(_Opts):
    latency_ms: float = Field(2.0, gt=0, le=60_000)
    jitter_ms: float = Field(0.0, ge=0, le=60_000)
    concurrency: int = Field(1, ge=1, le=4096)


class MatmulOptions(_Opts):
    size: int = Field(128, ge=8, le=4096, description="matrix side; work per sample grows as size^3")
    threads: int = Field(0, ge=0, le=256, description="worker threads; 0 = one per CPU core")


class PythonOptions(BaseModel):
    # The user's function takes whatever keyword options it likes.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


def options_model(sut: str) -> type[BaseModel]:
    if sut == "null":
        return NullOptions
    if sut == "sleep":
        return SleepOptions
    if sut == "matmul":
        return MatmulOptions
    return PythonOptions


def validate_sut_options(sut: str, options: dict[str, Any]) -> BaseModel:
    return options_model(sut).model_validate(options or {})


# ---------------------------------------------------------------------------------------------
# Implementations (run inside the worker process)

Complete = Callable[[list[int]], None]  # called with LoadGen response ids


def fatal(sut: "Sut", exc: BaseException) -> None:
    """A SUT error is fatal: LoadGen would otherwise wait for ever for the lost samples.

    Print the traceback (the console shows its tail) and leave at once with status 3.
    """
    sut.error = exc
    traceback.print_exception(exc, file=sys.stderr)
    print(f"labconsole worker: the SUT raised {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    sys.stderr.flush()
    os._exit(3)


class Sut:
    """Base: counts what was issued and completed, for the progress stream."""

    def __init__(self, complete: Complete):
        self._complete_ids = complete
        self._lock = threading.Lock()
        self.issued = 0
        self.completed = 0
        self.error: BaseException | None = None
        self.lanes = 1  # samples the SUT can serve at once

    def complete(self, ids: list[int]) -> None:
        self._complete_ids(ids)
        with self._lock:
            self.completed += len(ids)

    def issue(self, samples: list[Any]) -> None:
        with self._lock:
            self.issued += len(samples)
        self._issue(samples)

    def _issue(self, samples: list[Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def flush(self) -> None:
        pass

    @property
    def threads(self) -> list[threading.Thread]:
        """The SUT's own threads (those that complete samples)."""
        return []

    def stop(self, timeout: float = 10.0) -> list[threading.Thread]:
        """Stop the SUT's threads and wait for them, at most `timeout` s in all.

        Returns the threads still running then (none, unless one is stuck in the SUT's work).
        """
        return []

    def capacity(self, seconds: float = 0.4) -> float:
        """Measured (or modelled) samples per second, for `auto` LoadGen settings."""
        return 1e5

    def latency_s(self) -> float:
        """Measured (or modelled) service time of one sample with the SUT otherwise idle."""
        return 1e-5


class NullSut(Sut):
    """As lean as bare LoadGen's own zero-work SUT (reference/loadgen.md, Appendix A), since it
    measures the harness's ceiling: responses built straight from the samples, no lock (LoadGen
    calls `issue` from its one issue thread and the null SUT completes right there, so the
    counters have one writer; the progress thread only reads them)."""

    def __init__(self, complete: Complete):
        super().__init__(complete)
        try:
            import mlperf_loadgen as lg
        except ImportError:  # pragma: no cover - the worker always has LoadGen
            lg = None
        self._lg = lg

    def issue(self, samples: list[Any]) -> None:
        lg = self._lg
        n = len(samples)
        self.issued += n
        if lg is None:  # pragma: no cover
            self._complete_ids([s.id for s in samples])
        elif n == 1:  # Server and the streams: one sample a call
            lg.QuerySamplesComplete([lg.QuerySampleResponse(samples[0].id, 0, 0)])
        else:
            for i in range(0, n, 10000):
                lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples[i : i + 10000]])
        self.completed += n

    def capacity(self, seconds: float = 0.4) -> float:
        return 2e5

    def latency_s(self) -> float:
        return 5e-6


class _Lanes(Sut):
    """A pool of worker threads fed from one queue; each job is (ids, indices)."""

    def __init__(self, complete: Complete, lanes: int, chunk: int):
        super().__init__(complete)
        self._queue: queue.Queue[tuple[list[int], list[int]] | None] = queue.Queue()
        self._chunk = max(1, chunk)
        self.lanes = lanes
        self._threads = [threading.Thread(target=self._lane, name=f"sut-lane-{i}", daemon=True) for i in range(lanes)]
        for t in self._threads:
            t.start()

    def _issue(self, samples: list[Any]) -> None:
        ids = [s.id for s in samples]
        idx = [s.index for s in samples]
        step = self._chunk if len(samples) > self._chunk else len(samples)
        for i in range(0, len(ids), step):
            self._queue.put((ids[i : i + step], idx[i : i + step]))

    def _lane(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            ids, idx = job
            try:
                self.work(idx)
            except BaseException as exc:  # noqa: BLE001
                fatal(self, exc)
            self.complete(ids)

    def work(self, indices: list[int]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def threads(self) -> list[threading.Thread]:
        return list(self._threads)

    def stop(self, timeout: float = 10.0) -> list[threading.Thread]:
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t for t in self._threads if t.is_alive()]


class SleepSut(_Lanes):
    def __init__(self, complete: Complete, options: SleepOptions, seed: int = 0):
        self.options = options
        self._rng = random.Random(seed)
        super().__init__(complete, lanes=options.concurrency, chunk=1)

    def work(self, indices: list[int]) -> None:
        for _ in indices:
            jitter = self._rng.uniform(-self.options.jitter_ms, self.options.jitter_ms) if self.options.jitter_ms else 0.0
            time.sleep(max(0.0, self.options.latency_ms + jitter) / 1000.0)

    def capacity(self, seconds: float = 0.4) -> float:
        return self.options.concurrency / (self.options.latency_ms / 1000.0)

    def latency_s(self) -> float:
        return self.options.latency_ms / 1000.0


class MatmulSut(_Lanes):
    def __init__(self, complete: Complete, options: MatmulOptions, seed: int = 0):
        import numpy as np

        self.options = options
        lanes = options.threads or (os.cpu_count() or 1)
        rng = np.random.default_rng(seed)
        n = options.size
        # A few operand pairs, picked by sample index, so the work touches real data.
        self._a = [rng.standard_normal((n, n), dtype=np.float32) for _ in range(4)]
        self._b = [rng.standard_normal((n, n), dtype=np.float32) for _ in range(4)]
        self._np = np
        self._lat: float | None = None
        super().__init__(complete, lanes=lanes, chunk=8)

    def work(self, indices: list[int]) -> None:
        for i in indices:
            k = i & 3
            self._np.matmul(self._a[k], self._b[k])

    def latency_s(self) -> float:
        if self._lat is None:
            self.work([0])  # warm up
            reps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 0.15:
                self.work([reps])
                reps += 1
            self._lat = (time.perf_counter() - t0) / reps
        return self._lat

    def capacity(self, seconds: float = 0.6, windows: int = 4) -> float:
        """Run the real lanes flat out: samples/s with every thread busy.

        The best of a few short windows, not the mean: on a shared machine a neighbour's burst
        lowers some windows, and an Offline query sized from a low estimate finishes early
        (INVALID). Over-estimating only makes the run last longer.
        """
        done = threading.Event()
        counter = [0]
        lock = threading.Lock()

        def spin() -> None:
            while not done.is_set():
                self.work([counter[0]])
                with lock:
                    counter[0] += 1

        self.latency_s()
        threads = [threading.Thread(target=spin, daemon=True) for _ in self._threads]
        for t in threads:
            t.start()
        best = 0.0
        try:
            for _ in range(windows):
                with lock:
                    c0, t0 = counter[0], time.perf_counter()
                time.sleep(seconds / windows)
                with lock:
                    c1, t1 = counter[0], time.perf_counter()
                best = max(best, (c1 - c0) / (t1 - t0))
        finally:
            done.set()
            for t in threads:
                t.join()
        return best


class PythonSut(_Lanes):
    def __init__(self, complete: Complete, target: str, options: dict[str, Any]):
        _, module_name, func_name = target.split(":", 2)
        module = importlib.import_module(module_name)
        self._func = getattr(module, func_name)
        self._kwargs = dict(options)
        super().__init__(complete, lanes=1, chunk=64)

    def work(self, indices: list[int]) -> None:
        self._func(indices, **self._kwargs)

    def latency_s(self) -> float:
        t0 = time.perf_counter()
        self.work([0])
        return max(1e-6, time.perf_counter() - t0)

    def capacity(self, seconds: float = 0.4) -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            self.work([n % 64])
            n += 1
        return n / (time.perf_counter() - t0)


def make_sut(name: str, options: dict[str, Any], complete: Complete, seed: int = 0) -> Sut:
    opts = validate_sut_options(name, options)
    if name == "null":
        return NullSut(complete)
    if name == "sleep":
        return SleepSut(complete, opts, seed)  # type: ignore[arg-type]
    if name == "matmul":
        return MatmulSut(complete, opts, seed)  # type: ignore[arg-type]
    if name.startswith("python:"):
        return PythonSut(complete, name, options)
    raise ValueError(f"unknown SUT {name!r}")


__all__ = ["make_sut", "validate_sut_options", "Sut"]
