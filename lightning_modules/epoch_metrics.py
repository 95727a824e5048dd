"""The epoch's metrics of the LightningModule, as Keras computes them (a departure for a fair comparison, not
for speed): the mean loss weighted by the batches' sizes and the micro-averaged accuracy."""
from __future__ import annotations

import torch
from torchmetrics import Metric


class EpochMetrics(Metric):
    """The mean loss, weighted by the batches' sizes as Keras weights it, and the micro-averaged accuracy (Keras'
    "accuracy") of an epoch: three sums kept on the device, a few tensor operations a step, summed over the
    processes once, in compute(). A NaN loss stays NaN in the mean, as in Keras.

    Not torchmetrics' MeanMetric and MulticlassAccuracy: MeanMetric(nan_strategy="disable"), which skips a
    synchronising NaN check every step, drops the weights (Lightning-AI/torchmetrics#3434), and the two updates take
    about 3.5 times as long as this one (bench/README.md, Speed)."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("loss_sum", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        # in place: `self.x += ...` would go through Metric's and Module's __setattr__, three times a step
        self.loss_sum.add_(loss * len(labels))
        self.correct.add_((logits.argmax(1) == labels).sum())
        self.count.add_(len(labels))

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.compute_local()

    def compute_local(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The means of this process's sums (compute() gives those of the sums over every process)."""
        return self.loss_sum / self.count, self.correct / self.count
