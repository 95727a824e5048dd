"""--bn-recalibration on Lightning (lab.run.recalibration). torch.optim.swa_utils.update_bn does the same average
but puts the whole network in training mode, dropout included; here only the batch norms are."""
from __future__ import annotations

import io
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from core.io import write_bytes_atomic
from lab.run.recalibration import BatchNorms

STATISTICS = ("running_mean", "running_var", "num_batches_tracked")
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def tested_norms(model: nn.Module, checkpoint: Path, device: torch.device,
                 context: Callable[[], AbstractContextManager]) -> BatchNorms:
    """The batch norms of `model` that train (TransferClassifier keeps frozen ones in eval mode), recomputed on
    `device` under `context` (the run's precision), saved into `checkpoint`, which holds `model`'s weights."""
    norms = [module for module in model.modules() if isinstance(module, BATCH_NORMS) and module.track_running_stats
             and (module.weight is None or module.weight.requires_grad)]
    return BatchNorms(len(norms), lambda batches: recompute(model, norms, batches, device, context),
                      lambda: save_statistics(model, checkpoint))


@torch.no_grad()
def recompute(model: nn.Module, norms: list[nn.Module], batches: list[np.ndarray], device: torch.device,
              context: Callable[[], AbstractContextManager]) -> None:
    model.eval().to(device)
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average
        norm.train()
    with context():
        for batch in batches:
            model(torch.from_numpy(batch).to(device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()


def save_statistics(model: nn.Module, checkpoint: Path) -> None:
    """`checkpoint` rewritten (atomically) with the batch norms' statistics of `model`, all else as saved."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    current = model.state_dict()  # the run wrote the checkpoint from it: the same keys (--compile keeps them)
    for key in saved["state_dict"]:
        if key.rsplit(".", 1)[-1] in STATISTICS:
            saved["state_dict"][key] = current[key].detach().cpu()
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    write_bytes_atomic(checkpoint, buffer.getvalue())
