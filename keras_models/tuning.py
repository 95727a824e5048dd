"""The Keras side of the search: a keras-tuner Tuner whose trials train with keras_models.training."""
from __future__ import annotations

from pathlib import Path

import keras

from keras_models import training
from lab.outcome import Outcome
from lab.search_engine import LabTuner


class KerasTuner(LabTuner):
    backend = "keras"

    def fit_trial(self, settings, trial_dir: Path, resume: bool) -> Outcome:
        keras.backend.clear_session()  # drop the previous trials' graphs
        stop = keras.callbacks.EarlyStopping(monitor="val_acc", mode="max", patience=self.patience)
        return training.train(settings, self.splits, trial_dir, resume, self.plan, extra_callbacks=(stop,))
