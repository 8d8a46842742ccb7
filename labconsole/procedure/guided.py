"""Guided calibration: the operator runs, retries, skips and accepts each step.

`InferencePlan(step_runner=GuidedCalibration())` hands its `Calibration` to `drive()`, which
runs on the procedure's thread and waits for the operator's commands (`run`, `skip`,
`next`, `run_rest`) posted from another thread (the TUI). The steps are the same objects the
headless run executes in order, so a guided calibration and `labconsole run` produce the
same `calibration.json` and the same timeline events.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

from labconsole.procedure.calibration import Calibration, Step, StepResult

RUN, SKIP, NEXT, RUN_REST = "run", "skip", "next", "run_rest"


class GuidedCalibration:
    def __init__(self) -> None:
        self._commands: queue.Queue[tuple[str, str]] = queue.Queue()
        self._lock = threading.Lock()
        self.calibration: Calibration | None = None
        self.steps: list[Step] = []
        self.index = 0  # the step the operator is on
        self.running: str | None = None  # key of the step running now
        self.started = threading.Event()  # drive() has the steps
        self.done = threading.Event()  # every step is past; the run goes on

    # --- the operator's side (any thread) ----------------------------------------------------
    def run(self) -> None:
        """Run the current step (again, if it ran before: a retry)."""
        self._commands.put((RUN, ""))

    def skip(self, why: str = "skipped by the operator") -> None:
        self._commands.put((SKIP, why))

    def next(self) -> None:
        """Accept the current step's verdict and move on (the last one ends the calibration)."""
        self._commands.put((NEXT, ""))

    def run_rest(self) -> None:
        """Run every remaining step that has no verdict yet, in order, without asking."""
        self._commands.put((RUN_REST, ""))

    @property
    def current(self) -> Step | None:
        with self._lock:
            return self.steps[self.index] if 0 <= self.index < len(self.steps) else None

    def result(self, step: Step) -> StepResult | None:
        cal = self.calibration
        return cal.results.get(step.key) if cal is not None else None

    @property
    def waiting(self) -> bool:
        """True while the procedure waits for the operator."""
        return self.started.is_set() and not self.done.is_set() and self.running is None

    # --- the procedure's side ----------------------------------------------------------------
    def drive(self, calibration: Calibration, should_stop: Callable[[], bool]) -> None:
        with self._lock:
            self.calibration = calibration
            self.steps = calibration.applicable()
            self.index = 0
        self.started.set()
        try:
            while self.index < len(self.steps):
                if should_stop():
                    return
                try:
                    cmd, arg = self._commands.get(timeout=0.2)
                except queue.Empty:
                    continue
                step = self.steps[self.index]
                if cmd == RUN:
                    self._run(calibration, step)
                elif cmd == SKIP:
                    calibration.skip(step, arg or "skipped by the operator")
                    self._advance()
                elif cmd == NEXT:
                    if step.key not in calibration.results:
                        self._run(calibration, step)  # "next" on a step never run runs it first
                    self._advance()
                elif cmd == RUN_REST:
                    for s in self.steps[self.index :]:
                        if should_stop():
                            return
                        if s.key not in calibration.results:
                            self._run(calibration, s)
                        self._advance()
        finally:
            self.done.set()

    def _run(self, calibration: Calibration, step: Step) -> None:
        self.running = step.key
        try:
            calibration.run_step(step)
        finally:
            self.running = None

    def _advance(self) -> None:
        with self._lock:
            self.index += 1
