"""Lightning's RichProgressBar, redrawn at most every `interval` seconds as tqdm and Keras' progbar do.

RichProgressBar redraws and recomputes its metrics after every batch: a few milliseconds, more
than a whole training step of a small network on a CPU. While training, it shows the epoch's running
loss and accuracy, read from the module at each redraw, as Keras' progress bar does.
"""
from __future__ import annotations

import time

from pytorch_lightning.callbacks import RichProgressBar


class ThrottledRichProgressBar(RichProgressBar):
    def __init__(self, interval: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.interval = interval
        self._last_draw = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.monotonic()
        last = batch_idx + 1 == self.total_train_batches
        if last or now - self._last_draw >= self.interval:
            self._last_draw = now
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        if trainer.training and hasattr(pl_module, "running_metrics"):
            metrics.update(pl_module.running_metrics())
        return metrics
