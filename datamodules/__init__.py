"""Dataset loading, backend-free: numpy arrays in, identical splits out for Lightning and Keras alike.

Importing this package imports numpy only; torchvision (downloads), scikit-learn (digits) and PIL
(image folders) are imported when first needed.
"""
from __future__ import annotations

from pathlib import Path

from datamodules.base import DataSplits, ImageSet, RawDataset
from datamodules.registry import DATASETS, load_raw
from datamodules.splits import make_splits

__all__ = ["DATASETS", "DataSplits", "ImageSet", "RawDataset", "load_raw", "load_splits", "make_splits"]


def load_splits(name: str, data_dir: str | Path | None = None, seed: int = 0, val_fraction: float = 0.1,
                download: bool = True) -> DataSplits:
    """Load dataset `name` and split it for `seed` (see `make_splits`)."""
    return make_splits(load_raw(name, data_dir, download), seed=seed, val_fraction=val_fraction)
