"""Where a steady training step's time goes, measured the same way on both backends (results.json "profile").

- step: the in-loop step, over STEPS steady steps of the run's last epoch (its first SKIP steps and its last left
  out), read by the backend's batch-start hook (`StepWindow`);
- compute: forward, backward and optimizer step on one batch, again and again, on a copy of the model and its
  optimizer, outside the framework's loop: the run's weights, optimizer and random state are not touched;
- data: the training pipeline alone, a fresh copy of it, batch after batch;
- overhead = step - compute - data: what the framework's loop adds (its hooks, metrics, logging, callbacks).
  It is negative where the pipeline prepares batches while the step computes (tf.data's prefetching), or where
  the machine was busier while the parts were timed apart than during the loop's window (a shared CPU).

Each is timed in blocks of BLOCK steps (the accelerator synchronised at their ends), and the median block is
taken: a moment when the process was descheduled on a shared machine falls in one block and is left out.
Only the calls that run one step or fetch one batch are backend-specific; this module does the rest.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Iterable

SKIP = 5  # first steps of an epoch, left out of the window
STEPS = 30  # steps timed, in the loop and apart
BLOCK = 5  # steps per timed block
WARMUP = 3  # calls before timing the compute and data apart


def window(steps_per_epoch: int) -> tuple[int, int] | None:
    """(first, stop): the window times steps first..stop-1 of an epoch, whole blocks of them; None when an epoch
    is too short for one block (the last step, maybe a smaller batch, is never in it)."""
    blocks = min(STEPS, steps_per_epoch - 1 - SKIP) // BLOCK
    return (SKIP, SKIP + blocks * BLOCK) if blocks else None


def no_sync() -> None:
    """Nothing to wait for (the CPU). A function, not a lambda: a StepWindow travels to ddp_spawn's processes."""


class StepWindow:
    """Fed each epoch's start (epoch_start) and every batch start (batch_start); step_ms is the in-loop step of
    the last epoch whose window closed, None before one has. sync() waits for the accelerator's queued work."""

    def __init__(self, sync: Callable[[], None] = no_sync, clock: Callable[[], float] = time.perf_counter):
        self.sync, self.clock = sync, clock
        self.bounds: tuple[int, int] | None = None
        self._marks: list[float] = []
        self.step_ms: float | None = None
        self.steps = 0

    def epoch_start(self, steps_per_epoch: int) -> None:
        self.bounds, self._marks = window(steps_per_epoch), []

    def batch_start(self, index: int) -> None:
        if self.bounds is None or not self.bounds[0] <= index <= self.bounds[1] or (index - self.bounds[0]) % BLOCK:
            return
        self.sync()
        self._marks.append(self.clock())
        if index == self.bounds[1] and len(self._marks) > 1:
            self.steps = self.bounds[1] - self.bounds[0]
            self.step_ms = _median_block_ms(self._marks)


def ms_per_call(call: Callable[[], object], sync: Callable[[], None] = no_sync, warmup: int = WARMUP,
                count: int = STEPS) -> float:
    """Milliseconds per call of `call` after `warmup` calls, the accelerator's work included: the median of
    count // BLOCK blocks."""
    for _ in range(warmup):
        call()
    sync()
    marks = [time.perf_counter()]
    for index in range(1, max(count // BLOCK, 1) * BLOCK + 1):
        call()
        if index % BLOCK == 0:
            sync()
            marks.append(time.perf_counter())
    return _median_block_ms(marks)


def _median_block_ms(marks: list[float]) -> float:
    """Milliseconds per step of the median block, from the clock read at each block's bounds."""
    return 1000 * statistics.median(b - a for a, b in zip(marks, marks[1:])) / BLOCK


def breakdown(loop: StepWindow, compute: Callable[[], object], data: Callable[[], Callable[[], object]],
              sync: Callable[[], None] = no_sync) -> dict | None:
    """The profile without its machine (the runner names it), in milliseconds per step, compute and data timed
    now, apart, as many times as the loop's window; data() makes the call that fetches a batch, made only now so
    that a pipeline working ahead (tf.data's prefetch) starts empty. None when no window closed (no epoch trained
    in this process, or epochs too short)."""
    if loop.step_ms is None:
        return None
    compute_ms = ms_per_call(compute, sync, count=loop.steps)
    data_ms = ms_per_call(data(), sync, count=loop.steps)
    return {"step_ms": round(loop.step_ms, 3), "compute_ms": round(compute_ms, 3), "data_ms": round(data_ms, 3),
            "overhead_ms": round(loop.step_ms - compute_ms - data_ms, 3), "steps": loop.steps}


def next_batch(pipeline: Callable[[], Iterable]) -> Callable[[], object]:
    """A call that takes the next batch of a fresh pipeline(), starting another when one ends."""
    state = {"it": iter(pipeline())}

    def call():
        try:
            return next(state["it"])
        except StopIteration:
            state["it"] = iter(pipeline())
            return next(state["it"])

    return call
