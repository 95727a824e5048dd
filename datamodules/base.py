"""The canonical in-memory form every dataset is loaded into, whichever backend trains on it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 N x H x W x C and integer labels (int64)."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 N x H x W x C, got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels shape {self.labels.shape} does not match {len(self.images)} images")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class RawDataset:
    """A dataset as loaded: its train part, its official test part if it has one, and class names."""

    name: str
    train: ImageSet
    test: ImageSet | None
    class_names: tuple[str, ...]
    source: str  # where the files were read from, for reports


@dataclass(frozen=True)
class DataSplits:
    """Train / validation / test, identical for both backends for a given seed."""

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    class_names: tuple[str, ...]
    source: str
    mean: tuple[float, ...]  # per channel, of train images scaled to [0, 1]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C)."""
        return tuple(self.train.images.shape[1:])
