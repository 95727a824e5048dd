"""Seeded train / validation / test splits and the train-set channel statistics, in plain numpy.

The official test set is used where a dataset has one. Where it has none (digits, a folder tree without
train/test), one seeded permutation of all images gives the test part first (`test_fraction`, default 0.2)
and then the validation part (`val_fraction` of what remains); the rest is train. Index sets are sorted,
so each split keeps the original image order. Same seed, same splits, whichever backend trains.
"""
from __future__ import annotations

import numbers

import numpy as np

from core.errors import LabError
from datamodules.base import DataSplits, ImageSet, RawDataset

DEFAULT_TEST_FRACTION = 0.2


def make_splits(raw: RawDataset, seed: int = 0, val_fraction: float = 0.1, *,
                test_fraction: float = DEFAULT_TEST_FRACTION) -> DataSplits:
    """Split `raw` into train / val / test for `seed` and compute the train mean/std per channel."""
    _check_fraction("val_fraction", val_fraction)
    perm = np.random.default_rng(seed).permutation(len(raw.train))
    if raw.test is None:
        _check_fraction("test_fraction", test_fraction)
        n_test = round(len(perm) * test_fraction)
        test_idx, perm = perm[:n_test], perm[n_test:]
        test = _take(raw.train, test_idx)
    else:
        test = raw.test
    n_val = round(len(perm) * val_fraction)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    train, val = _take(raw.train, train_idx), _take(raw.train, val_idx)
    for part, split in (("train", train), ("validation", val), ("test", test)):
        if len(split) == 0:
            fractions = f"val_fraction {val_fraction}" + ("" if raw.test else f", test_fraction {test_fraction}")
            raise LabError(f"The {part} split of {raw.name} is empty ({len(raw.train)} train images, "
                           f"{fractions}); choose fractions that leave at least one image in every split.")
    mean, std = channel_stats(train.images)
    return DataSplits(name=raw.name, train=train, val=val, test=test, class_names=raw.class_names,
                      source=raw.source, mean=mean, std=std)


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 N x H x W x C images scaled to [0, 1].

    Exact via a 256-bin histogram per channel, so no float copy of the whole set is made.
    """
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[-1]):
        counts = np.bincount(images[..., c].ravel(), minlength=256).astype(np.float64)
        mean = counts @ values / counts.sum()
        means.append(float(mean))
        stds.append(float(np.sqrt(counts @ (values - mean) ** 2 / counts.sum())))
    return tuple(means), tuple(stds)


def _check_fraction(name: str, value: float) -> None:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 < value < 1:
        raise LabError(f"{name} is {value!r} but must be a number strictly between 0 and 1, such as 0.1.")


def _take(images: ImageSet, index: np.ndarray) -> ImageSet:
    index = np.sort(index)
    return ImageSet(images=images.images[index], labels=images.labels[index])
