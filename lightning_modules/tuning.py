"""The Lightning side of the search: a keras-tuner Tuner whose trials train with lightning_modules.training."""
from __future__ import annotations

import signal
import warnings
from pathlib import Path

# torch first: TensorFlow, which keras-tuner imports, crashes torch's later import (see lab.search_engine).
from pytorch_lightning.callbacks import EarlyStopping

from lightning_modules import training
from lab.outcome import Outcome  # isort: skip
from lab.search_engine import LabTuner  # isort: skip


class LightningTuner(LabTuner):
    backend = "lightning"

    def fit_trial(self, settings, trial_dir: Path, resume: bool) -> Outcome:
        stop = EarlyStopping("val/acc", mode="max", patience=self.patience)
        with warnings.catch_warnings():
            # A Hyperband continuation starts from its parent's checkpoints, copied from the parent's folder.
            warnings.filterwarnings("ignore", message="The dirpath has changed")
            try:
                return training.train(settings, self.splits, trial_dir, resume, self.plan, extra_callbacks=(stop,))
            except SystemExit as e:  # Lightning turns Ctrl-C into exit(1), ignoring further Ctrl-C
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt from e
