"""The order in which training images are visited: one definition for both backends.

Epoch e of a run with seed s always visits the images in the same order, so a resumed run
sees the batches an uninterrupted one would have seen. The last, smaller batch is kept, as both
frameworks do by default, except when it would hold a single image: BatchNorm cannot train on
one image (PyTorch refuses it), so that image sits the epoch out, on both backends alike.
"""
from __future__ import annotations

import numpy as np

EVAL_BATCH_SIZE = 1024  # validation, test and prediction batches: no gradients, so larger than training's


def trained_images(n: int, batch_size: int) -> int:
    """How many of n images an epoch trains on."""
    return n - 1 if n > 1 and batch_size > 1 and n % batch_size == 1 else n


def epoch_order(n: int, seed: int, epoch: int, batch_size: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """Indices of one epoch's training images, shuffled, this process's share of them under DDP."""
    order = np.random.default_rng([seed, epoch]).permutation(n)[rank::world]
    return order[:trained_images(len(order), batch_size)]


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def train_batches(n: int, batch_size: int) -> int:
    """Batches in one training epoch of n images."""
    return num_batches(trained_images(n, batch_size), batch_size)
