"""Keras callback: times epochs and records their metrics (lab.records.recording), writes them to
TensorBoard with the epoch as step, under the tags the Lightning side uses, and prints the epoch's line
when the progress mode asks for one (lab.progress)."""
from __future__ import annotations

from core.frameworks import keras, tf
from lab.progress import print_epoch
from lab.records.recording import EPOCH_TAGS, RunRecord

# Keras log names -> the shared tags.
KERAS_LOGS = {"train/loss": "loss", "train/acc": "acc", "val/loss": "val_loss", "val/acc": "val_acc"}


class KerasRecorder(keras.callbacks.Callback):
    def __init__(self, record: RunRecord, writer: tf.summary.SummaryWriter, epochs: int):
        super().__init__()
        self.record, self.writer, self.epochs = record, writer, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.record.start_epoch()

    def on_epoch_end(self, epoch, logs=None):
        # The logs hold numbers, so the accelerator's work for this epoch is finished.
        row = self.record.end_epoch(epoch + 1, {tag: logs[key] for tag, key in KERAS_LOGS.items()})
        with self.writer.as_default():
            for tag in EPOCH_TAGS:
                tf.summary.scalar(tag, row[tag], step=row["epoch"])
        self.writer.flush()
        print_epoch(row, self.epochs)
