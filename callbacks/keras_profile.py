"""Keras callback: the in-loop step of the run's last epoch, timed over a window of steady steps
(lab.records.profile). A batch-begin hook keeps Keras' asynchronous batch-end callbacks as they are."""
from __future__ import annotations

from core.frameworks import keras, tf
from lab.records.profile import StepWindow, no_sync


class StepClock(keras.callbacks.Callback):
    def __init__(self, gpu: bool = False):
        super().__init__()
        self.window = StepWindow(tf.test.experimental.sync_devices if gpu else no_sync)

    def on_epoch_begin(self, epoch, logs=None):
        self.window.epoch_start(self.params["steps"])

    def on_train_batch_begin(self, batch, logs=None):
        self.window.batch_start(batch)
