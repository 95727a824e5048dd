"""The optimizer, one rule for both backends: Adam with Keras' epsilon (PyTorch's default is 1e-8, so the
Lightning side passes it), or SGD with momentum 0.9."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class OptimizerSpec:
    name: str  # one of OPTIMIZERS
    lr: float
    adam_epsilon: float = 1e-7
    sgd_momentum: float = 0.9

    @classmethod
    def from_settings(cls, settings: ExperimentSettings, lr: float | None = None) -> OptimizerSpec:
        """The run's optimizer; lr overrides --lr (a transfer phase's learning rate)."""
        return cls.of(settings.optimizer, settings.lr if lr is None else lr)

    @classmethod
    def of(cls, name: str, lr: float) -> OptimizerSpec:
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
        return cls(name, float(lr))
