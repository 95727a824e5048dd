"""Dataset loading, backend-free: numpy arrays in, identical splits out for Lightning and Keras alike.

Importing this package imports numpy only; torchvision (downloads), scikit-learn (digits) and PIL
(image folders) are imported when first needed.
"""
from __future__ import annotations

from pathlib import Path

from datamodules.base import DataSplits, ImageSet, RawDataset
from datamodules.registry import DATASETS, load_raw
from datamodules.splits import make_splits
from datamodules.subset import sample_train, select_classes

__all__ = ["DATASETS", "DataSplits", "ImageSet", "RawDataset", "load_raw", "load_splits", "make_splits", "sample_train",
           "select_classes"]


def load_splits(name: str, data_dir: str | Path | None = None, seed: int = 0, val_fraction: float = 0.1,
                download: bool = True, classes: str | None = None, train_images: int | None = None,
                image_size: int | None = None, resize: str = "stretch") -> DataSplits:
    """Load dataset `name` (its images at image_size x image_size when given, see `load_raw`), keep `classes` if
    given (see `select_classes`), split it for `seed` (see `make_splits`), keep `train_images` of the training
    images if given (see `sample_train`)."""
    raw = select_classes(load_raw(name, data_dir, download, image_size, resize), classes)
    return sample_train(make_splits(raw, seed=seed, val_fraction=val_fraction), train_images, seed)
