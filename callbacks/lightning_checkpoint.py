"""Lightning's ModelCheckpoint for checkpoints saved at epoch ends only, as the lab saves them, kept out of the
per-step path: Lightning calls every callback's hooks at every training step, six of them, and for each
hook call reads the callback's state_key, which ModelCheckpoint formats anew from its settings every time."""
from __future__ import annotations

from functools import cached_property

from pytorch_lightning.callbacks import ModelCheckpoint


class EpochCheckpoint(ModelCheckpoint):
    @cached_property
    def state_key(self) -> str:
        """ModelCheckpoint's very key, computed once (its settings never change): checkpoints file the callback's
        state (the best score so far) under it, so runs saved before this class existed resume with it."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Nothing: ModelCheckpoint saves here only every N training steps or every so many seconds, which the lab
        never asks for (it checks that here and returns, a tenth of a millisecond a step)."""
        if self._every_n_train_steps or self._train_time_interval is not None:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
