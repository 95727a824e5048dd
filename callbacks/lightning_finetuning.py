"""Lightning callback for the phases of a transfer run (lab.specs.phases): a BaseFinetuning callback freezes the
backbone before training and unfreezes its top blocks at the phase boundary."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BaseFinetuning
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lab.specs.phases import Phase, phase_at, trains_block

if TYPE_CHECKING:
    from lightning_modules.components.backbones import TransferParts


class PhaseFinetuning(BaseFinetuning):
    """Sets which blocks train in each phase; at a boundary every parameter group takes the phase's learning
    rate and the optimizer state starts afresh (as Keras' recompile does). on_phase_end(index, trainer) is
    called when a phase other than the last has trained its epochs."""

    def __init__(self, parts: TransferParts, phases: list[Phase], epochs_done: int = 0,
                 on_phase_end: Callable[[int, pl.Trainer], None] | None = None):
        super().__init__()
        self.parts, self.phases, self.epochs_done = parts, phases, epochs_done
        self.on_phase_end = on_phase_end

    def freeze_before_training(self, pl_module) -> None:
        # A resumed run restores the optimizer of its last finished epoch: set up that epoch's phase.
        self.set_phase(self.phases[phase_at(self.phases, max(self.epochs_done - 1, 0))])

    def set_phase(self, phase: Phase) -> list[nn.Module]:
        """Freeze or unfreeze each block for `phase`; returns the modules that train in it."""
        training = []
        for index, block in enumerate(self.parts.blocks):
            self.freeze(block, train_bn=False)
            if trains_block(phase, index, len(self.parts.blocks)):
                training += _trainable_modules(block, with_norms=phase.trainable_blocks is None)
        self.make_trainable(training)
        return training

    def finetune_function(self, pl_module, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        for phase in self.phases[1:]:
            if epoch == phase.start and epoch >= self.epochs_done:
                modules = self.set_phase(phase)
                for group in optimizer.param_groups:
                    group["lr"] = phase.lr
                optimizer.state.clear()
                # By identity: BaseFinetuning.filter_on_optimizer compares values, and equal tensors exist.
                known = {id(p) for group in optimizer.param_groups for p in group["params"]}
                new = [p for m in modules for p in m.parameters(recurse=False) if id(p) not in known]
                if new:
                    optimizer.add_param_group({"params": new, "lr": phase.lr})

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        done = trainer.current_epoch + 1
        for index, phase in enumerate(self.phases[:-1]):
            if done == phase.end and self.on_phase_end is not None:
                self.on_phase_end(index, trainer)


def _trainable_modules(block: list[nn.Module], with_norms: bool) -> list[nn.Module]:
    """The leaf modules of a block that hold parameters; BatchNorm only when with_norms."""
    return [m for m in BaseFinetuning.flatten_modules(block)
            if any(True for _ in m.parameters(recurse=False)) and (with_norms or not isinstance(m, _BatchNorm))]
