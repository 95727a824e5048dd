"""Lightning's ModelCheckpoint as the lab uses it: saved at epoch ends, under the shared file names
(lab.records.checkpoint_files).

LastPhaseBest is the best val/acc of the last phase of a transfer run (lab.specs.phases). A fine-tuned network is
what a transfer run trains, so its best checkpoint, the one --test-weights best tests and --weights RUN_DIR
loads, is the best epoch of the last phase: at that phase's first epoch the best of the earlier phases is
forgotten, as a new keras.callbacks.ModelCheckpoint per phase does on the Keras side.
"""
from __future__ import annotations

import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from lab.records.checkpoint_files import BEST, LAST


def last_checkpoint(dirpath) -> ModelCheckpoint:
    """The last epoch's checkpoint, overwritten: never versioned, also when continuing from checkpoints copied
    from elsewhere."""
    return ModelCheckpoint(dirpath, filename=LAST, save_on_train_epoch_end=True, enable_version_counter=False)


class LastPhaseBest(ModelCheckpoint):
    def __init__(self, dirpath, last_phase_start: int):
        super().__init__(dirpath, filename=BEST, monitor="val/acc", mode="max", save_on_train_epoch_end=True,
                         enable_version_counter=False)
        self.last_phase_start = last_phase_start

    @property
    def state_key(self) -> str:
        """ModelCheckpoint's very key: checkpoints file the callback's state (the best score so far) under it, so
        that every run's checkpoints resume with it."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # A run resumed inside the last phase restored that phase's best from its checkpoint: kept.
        if self.last_phase_start > 0 and trainer.current_epoch == self.last_phase_start:
            self.best_k_models, self.kth_best_model_path = {}, ""
            self.kth_value, self.best_model_score = torch.tensor(-torch.inf), None
