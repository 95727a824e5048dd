"""The order in which training images are visited: one definition for both backends.

Epoch e of a run with seed s always visits the images in the same order, so a resumed run
sees the batches an uninterrupted one would have seen.
"""
from __future__ import annotations

import numpy as np


def epoch_order(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """Indices of one epoch's training images, shuffled, this process's share of them under DDP."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[rank::world]


def num_batches(n: int, batch_size: int) -> int:
    """The last, smaller batch is kept, as both frameworks do by default."""
    return -(-n // batch_size)
