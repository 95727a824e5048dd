"""Lightning callback: times epochs and records their metrics (lab.records.recording), writes them to
TensorBoard with the epoch as step, under the tags the Keras side uses, and prints the epoch's line when
the progress mode asks for one (lab.progress)."""
from __future__ import annotations

import pytorch_lightning as pl
import torch

from lab.progress import print_epoch
from lab.records.recording import EPOCH_TAGS, RunRecord


class LightningRecorder(pl.Callback):
    def __init__(self, record: RunRecord, epochs: int):
        self.record, self.epochs = record, epochs

    def on_train_start(self, trainer, pl_module):
        self.record.restore(epochs_done=trainer.current_epoch)

    def on_fit_end(self, trainer, pl_module):
        if not self.record.history:  # resumed with every epoch done (killed before its results): no training ran
            self.record.restore(epochs_done=trainer.current_epoch)

    def on_train_epoch_start(self, trainer, pl_module):
        synchronize(trainer)
        self.record.start_epoch()

    def on_train_epoch_end(self, trainer, pl_module):
        synchronize(trainer)
        metrics = {tag: trainer.callback_metrics[tag].item() for tag in EPOCH_TAGS[:-1]}
        row = self.record.end_epoch(trainer.current_epoch + 1, metrics)
        if trainer.is_global_zero and trainer.logger is not None:
            for tag in EPOCH_TAGS:
                trainer.logger.experiment.add_scalar(tag, row[tag], row["epoch"])
            trainer.logger.experiment.flush()
        if trainer.is_global_zero:
            print_epoch(row, self.epochs)


def synchronize(trainer) -> None:
    """Wait for the GPU's queued work, so that a clock read next measures it."""
    if trainer.strategy.root_device.type == "cuda":
        torch.cuda.synchronize(trainer.strategy.root_device)
