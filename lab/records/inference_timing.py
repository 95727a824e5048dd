"""How fast a trained network infers, timed the same way on both backends (results.json "inference") and by every
way of bench.inference:

- latency: one image per call, WARMUP calls first, then CALLS calls, each timed alone (the accelerator's queued work
  waited for after it); the median call and the 95th percentile (nearest rank), in milliseconds per image. A run
  stops timing them after BUDGET_S seconds once MIN_CALLS are timed, so that a network whose call costs
  milliseconds (Keras' direct call) adds about a second to the run at most; bench.inference times every call;
- throughput: BATCH images per call (the first test images, repeated where the test split has fewer), BATCH_WARMUP
  calls first, then BATCH_CALLS timed; BATCH over the median call's seconds, in images per second.

Only "call the network on a batch" is backend-specific (`inference_speed` in lightning_modules/profiling.py and
keras_models/profiling.py; bench.inference's other ways); this module imports no framework.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import numpy as np

from lab.records.profile import no_sync

WARMUP = 10  # batch-1 calls before timing
CALLS = 200  # batch-1 calls timed, at most
MIN_CALLS, BUDGET_S = 50, 0.5  # a run's batch-1 calls end after BUDGET_S seconds of them, once MIN_CALLS are timed
BATCH = 256
BATCH_WARMUP = 1
BATCH_CALLS = 5


def batch_of(images: np.ndarray, size: int) -> np.ndarray:
    """The first `size` images, the split repeated where it holds fewer."""
    if len(images) == 0:
        raise ValueError("no images to time the network on")
    return np.resize(images, (size, *images.shape[1:])) if len(images) < size else images[:size]


def call_times(call: Callable[[np.ndarray], object], batches: list[np.ndarray], sync: Callable[[], None],
               clock: Callable[[], float], budget_s: float | None = None, min_calls: int = 0) -> list[float]:
    """Seconds of each call(batch), one batch after another, the accelerator waited for after each; with budget_s,
    the calls stop once they add up to budget_s seconds and min_calls are timed."""
    times, total = [], 0.0
    for batch in batches:
        start = clock()
        call(batch)
        sync()
        times.append(clock() - start)
        total += times[-1]
        if budget_s is not None and total >= budget_s and len(times) >= min_calls:
            break
    return times


def nearest_rank(values: list[float], share: float) -> float:
    """The value below which `share` of `values` lie (the nearest-rank percentile)."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def measure(call: Callable[[np.ndarray], object], images: np.ndarray, sync: Callable[[], None] = no_sync,
            clock: Callable[[], float] = time.perf_counter, calls: int = CALLS, warmup: int = WARMUP,
            batch_calls: int = BATCH_CALLS, budget_s: float | None = BUDGET_S) -> dict:
    """results.json's "inference" figures of call(uint8 N x H x W x C images), timed on `images` (the test split);
    budget_s None: all `calls` batch-1 calls timed."""
    singles = [images[i % len(images)][None] for i in range(warmup + calls)]
    call_times(call, singles[:warmup], sync, clock)
    latencies = call_times(call, singles[warmup:], sync, clock, budget_s, MIN_CALLS)
    batch = batch_of(images, BATCH)
    call_times(call, [batch] * BATCH_WARMUP, sync, clock)
    batch_s = statistics.median(call_times(call, [batch] * batch_calls, sync, clock))
    return {"ms_per_image_b1": round(1000 * statistics.median(latencies), 4),
            "p95_ms_b1": round(1000 * nearest_rank(latencies, 0.95), 4),
            "images_per_s_b256": round(BATCH / batch_s, 1) if batch_s > 0 else None,
            "calls_b1": len(latencies), "calls_b256": batch_calls}
