"""Keras callback: times epochs and records their metrics (lab.records.recording), writes them to
TensorBoard with the epoch as step, under the tags the Lightning side uses."""
from __future__ import annotations

from lab.frameworks import keras, tf
from lab.records.recording import EPOCH_TAGS, RunRecord

# Keras log names -> the shared tags.
KERAS_LOGS = {"train/loss": "loss", "train/acc": "acc", "val/loss": "val_loss", "val/acc": "val_acc"}


class KerasRecorder(keras.callbacks.Callback):
    def __init__(self, record: RunRecord, writer: tf.summary.SummaryWriter):
        super().__init__()
        self.record, self.writer = record, writer

    def on_epoch_begin(self, epoch, logs=None):
        self.record.start_epoch()

    def on_epoch_end(self, epoch, logs=None):
        # The logs hold numbers, so the accelerator's work for this epoch is finished.
        row = self.record.end_epoch(epoch + 1, {tag: logs[key] for tag, key in KERAS_LOGS.items()})
        with self.writer.as_default():
            for tag in EPOCH_TAGS:
                tf.summary.scalar(tag, row[tag], step=row["epoch"])
        self.writer.flush()
