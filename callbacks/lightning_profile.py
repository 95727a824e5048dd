"""Lightning callback: the in-loop step of the run's last epoch, timed over a window of steady steps
(lab.records.profile)."""
from __future__ import annotations

import pytorch_lightning as pl

from callbacks.lightning_recorder import synchronize
from lab.records.profile import StepWindow


class StepClock(pl.Callback):
    def __init__(self):
        self.window = StepWindow()

    def on_train_epoch_start(self, trainer, pl_module):
        self.window.sync = lambda: synchronize(trainer)
        self.window.epoch_start(int(trainer.num_training_batches))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.window.batch_start(batch_idx)
