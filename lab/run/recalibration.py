"""--bn-recalibration, the same steps on both backends: after training, the running mean and variance of each batch
norm that trains are recomputed from the tested weights and saved in the tested checkpoint.

The running statistics training leaves are an exponential average over the last hundred or so steps (Keras'
momentum 0.99, PyTorch's 0.01 in the lab's networks), so they lag the weights: recomputed, cifar_cnn's test accuracy
rose 1.4-3.0 points on the CIFAR-10 JPEGs, on both backends (bench/README.md, "At the lab's epochs"). The backends
recompute them as a plain average of the batches' statistics, each as its batch norm computes them in training
(PyTorch's variance unbiased, Keras' biased), with dropout off; frozen batch norms (a transfer run's) keep theirs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from datamodules.batching import recalibration_batches
from lab.reports.metrics import accuracy

if TYPE_CHECKING:
    from datamodules.base import DataSplits
    from lab.config.settings import ExperimentSettings


@dataclass(frozen=True)
class BatchNorms:
    """A backend's batch norms that train, in the tested network."""

    count: int
    recompute: Callable[[list[np.ndarray]], None]  # their running statistics from batches of uint8 training images
    save: Callable[[], None]  # the tested checkpoint rewritten with the network's statistics


def recalibrate(settings: ExperimentSettings, splits: DataSplits, norms: BatchNorms,
                test_logits: Callable[[], np.ndarray]) -> dict | None:
    """results.json's test "bn_recalibration": {"images", "layers", "accuracy_before" (the test accuracy the tested
    weights had as trained), "seconds" (recomputing and saving)}; {"images": 0, "layers": 0} for a network without
    batch norms that train; None when --bn-recalibration is 0. The test logits the backend computes after it are
    the recalibrated network's."""
    if not settings.bn_recalibration:
        return None
    if not norms.count:
        return {"images": 0, "layers": 0}
    train = splits.train.images
    batches = [train[indices] for indices in recalibration_batches(len(train), settings.bn_recalibration,
                                                                    settings.batch_size, settings.seed)]
    before = accuracy(test_logits(), splits.test.labels)
    start = time.perf_counter()
    norms.recompute(batches)
    norms.save()  # copies the statistics off a GPU: the time includes the recomputing
    return {"images": sum(len(batch) for batch in batches), "layers": norms.count, "accuracy_before": before,
            "seconds": round(time.perf_counter() - start, 3)}
