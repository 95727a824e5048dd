"""What a backend's training hands back to the shared code, which does everything else."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from lab.architectures import ParamCount
from lab.recording import RunRecord


@dataclass
class Outcome:
    test_logits: np.ndarray  # N x classes, float
    params: ParamCount
    record: RunRecord
    device: str  # what trained, e.g. "cpu" or "gpu x1 (NVIDIA H200)"
    log_images: Callable[[dict[str, np.ndarray]], None]  # tag -> H x W x C uint8, into TensorBoard
    log_hparams: Callable[[dict, dict], None]  # hyperparameters, final metrics -> HParams tab
    extra: dict | None = None
