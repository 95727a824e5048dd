"""Lightning's ModelCheckpoint as the lab uses it: saved at epoch ends only, and kept out of the per-step path.

Lightning calls every callback's hooks at every training step, and for each hook call reads the callback's
state_key, which ModelCheckpoint formats anew from its settings every time; EpochCheckpoint computes it once and
skips the per-step save check the lab never needs.

LastPhaseBest is the best val/acc of the last phase of a transfer run (lab.specs.phases). A fine-tuned network is
what a transfer run trains, so its best checkpoint, the one --test-weights best tests and --weights RUN_DIR
loads, is the best epoch of the last phase: at that phase's first epoch the best of the earlier phases is
forgotten, as a new keras.callbacks.ModelCheckpoint per phase does on the Keras side.
"""
from __future__ import annotations

from functools import cached_property

import torch
from pytorch_lightning.callbacks import ModelCheckpoint

BEST_FILENAME = "best"


class EpochCheckpoint(ModelCheckpoint):
    @cached_property
    def state_key(self) -> str:
        """ModelCheckpoint's very key, computed once (its settings never change): checkpoints file the callback's
        state (the best score so far) under it, so runs saved by a plain ModelCheckpoint resume with it."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Nothing: ModelCheckpoint saves here only every N training steps or every so many seconds, which the lab
        never asks for (it checks that here and returns, a tenth of a millisecond a step)."""
        if self._every_n_train_steps or self._train_time_interval is not None:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class LastPhaseBest(EpochCheckpoint):
    def __init__(self, dirpath, last_phase_start: int):
        super().__init__(dirpath, filename=BEST_FILENAME, monitor="val/acc", mode="max", save_on_train_epoch_end=True,
                         enable_version_counter=False)
        self.last_phase_start = last_phase_start

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # A run resumed inside the last phase restored that phase's best from its checkpoint: kept.
        if self.last_phase_start > 0 and trainer.current_epoch == self.last_phase_start:
            self.best_k_models, self.kth_best_model_path = {}, ""
            self.kth_value, self.best_model_score = torch.tensor(-torch.inf), None
