"""The PyTorch side: a LightningDataModule serving whole batches indexed out of preloaded tensors.

No per-sample Dataset, no PIL on the training path: the images live in one uint8 tensor (on the
GPU when training there) and a batch is one indexing operation.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import pytorch_lightning as pl
import torch

from datamodules.base import DataSplits, ImageSet
from datamodules.batching import EVAL_BATCH_SIZE, epoch_order, loss_scale, num_batches, replica_slice, train_batches


class Part(NamedTuple):
    """Where a replica's training batch sits in its global batch (its first image, the global batch's size), and
    the factor on its mean loss (batching.loss_scale: 1.0 on one device)."""

    start: int
    total: int
    loss_scale: float = 1.0


class TrainBatches:
    """One epoch's training batches: this replica's slice of each global batch (datamodules.batching), as
    (uint8 images N x H x W x C, int64 labels, Part). epoch_fn tells which epoch's order to serve.

    Not a DataLoader, for a fair comparison: the same global batches, in the same order, as Keras trains on
    (datamodules.tf_data), on any number of devices; a DataLoader's sampler would shuffle and split otherwise."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                 epoch_fn: Callable[[], int], rank: int = 0, world: int = 1):
        self.images, self.labels = images, labels
        self.batch_size, self.seed, self.epoch_fn = batch_size, seed, epoch_fn
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return train_batches(len(self.labels), self.batch_size, self.world)

    def __iter__(self):
        order = epoch_order(len(self.labels), self.seed, self.epoch_fn(), self.batch_size, self.world)
        indices = torch.from_numpy(order).to(self.images.device)
        for start in range(0, len(indices), self.batch_size):
            batch = indices[start:start + self.batch_size]
            part = replica_slice(len(batch), self.rank, self.world)
            mine = batch[part]
            yield self.images[mine], self.labels[mine], Part(part.start, len(batch),
                                                             loss_scale(len(mine), len(batch), self.world))


class TensorBatches:
    """Evaluation batches, (uint8 images, int64 labels), in order; under DDP every world-th image from `rank`
    on, so each image counts once (no padding) and the synchronised metrics cover the whole set."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, rank: int = 0, world: int = 1):
        self.images, self.labels, self.batch_size = images[rank::world], labels[rank::world], batch_size

    def __len__(self) -> int:
        return num_batches(len(self.labels), self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.labels), self.batch_size):
            yield self.images[start:start + self.batch_size], self.labels[start:start + self.batch_size]


def to_tensors(part: ImageSet, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(part.images).to(device), torch.from_numpy(part.labels).to(device)


class ArraysDataModule(pl.LightningDataModule):
    """Serves DataSplits' training and validation sets to a Lightning Trainer; the tensors move to the training
    device once. No test_dataloader: the test set is scored outside trainer.test, by the backend's predict_logits
    and the shared layer's one softmax (lab.reports.metrics), as on Keras."""

    def __init__(self, splits: DataSplits, batch_size: int, seed: int = 0, eval_batch_size: int = EVAL_BATCH_SIZE):
        super().__init__()
        self.splits, self.batch_size, self.seed = splits, batch_size, seed
        self.eval_batch_size = eval_batch_size
        self._tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _part(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        cached = self._tensors.get(name)
        if cached is None or cached[0].device != device:
            self._tensors[name] = to_tensors(getattr(self.splits, name), device)
        return self._tensors[name]

    def _world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def train_dataloader(self) -> TrainBatches:
        rank, world = self._world()
        epoch_fn = (lambda: self.trainer.current_epoch) if self.trainer else (lambda: 0)
        return TrainBatches(*self._part("train"), self.batch_size, self.seed, epoch_fn, rank, world)

    def val_dataloader(self) -> TensorBatches:
        rank, world = self._world()
        return TensorBatches(*self._part("val"), self.eval_batch_size, rank, world)
