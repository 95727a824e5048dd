"""Lightning's ModelCheckpoint of the best val/acc, of the last phase of a transfer run (lab.specs.phases).

A fine-tuned network is what a transfer run trains, so its best checkpoint, the one --test-weights best tests
and --weights RUN_DIR loads, is the best epoch of the last phase: at that phase's first epoch the best of the
earlier phases is forgotten, as a new keras.callbacks.ModelCheckpoint per phase does on the Keras side.
"""
from __future__ import annotations

import torch
from pytorch_lightning.callbacks import ModelCheckpoint

BEST_FILENAME = "best"


class LastPhaseBest(ModelCheckpoint):
    def __init__(self, dirpath, last_phase_start: int):
        super().__init__(dirpath, filename=BEST_FILENAME, monitor="val/acc", mode="max", save_on_train_epoch_end=True,
                         enable_version_counter=False)
        self.last_phase_start = last_phase_start

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # A run resumed inside the last phase restored that phase's best from its checkpoint: kept.
        if self.last_phase_start > 0 and trainer.current_epoch == self.last_phase_start:
            self.best_k_models, self.kth_best_model_path = {}, ""
            self.kth_value, self.best_model_score = torch.tensor(-torch.inf), None
