"""The order in which training images are visited: one definition for both backends and any number of devices.

Epoch e of a run with seed s always visits the same global batches of --batch-size images, in the same
order, so a resumed run sees the batches an uninterrupted one would have seen, and N devices see the
batches one device sees. Under data parallelism each of N replicas trains on its slice of every global
batch (`replica_slice`: contiguous, sizes differing by at most one, as tf.distribute splits a batch), so
every replica takes the same number of steps. The last, smaller batch is kept, as both frameworks do by
default, except when a replica's slice would hold fewer than 2 images: BatchNorm cannot train on one image
(PyTorch refuses it), so those images sit the epoch out. On one device that is a last batch of one image.
"""
from __future__ import annotations

import numpy as np

EVAL_BATCH_SIZE = 1024  # validation, test and prediction batches: no gradients, so larger than training's


def min_last_batch(batch_size: int, world: int = 1) -> int:
    """The fewest images the last global batch may hold: 2 per replica, or 1 when the per-replica batch is 1."""
    return world * min(2, batch_size // world)


def trained_images(n: int, batch_size: int, world: int = 1) -> int:
    """How many of n images an epoch trains on."""
    last = n % batch_size
    return n - last if 0 < last < min_last_batch(batch_size, world) else n


def epoch_order(n: int, seed: int, epoch: int, batch_size: int, world: int = 1) -> np.ndarray:
    """Indices of one epoch's training images, shuffled; consecutive runs of batch_size are the global batches."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[:trained_images(n, batch_size, world)]


def replica_slice(batch_len: int, rank: int, world: int) -> slice:
    """Replica `rank`'s part of a global batch of batch_len images."""
    size, extra = divmod(batch_len, world)
    start = rank * size + min(rank, extra)
    return slice(start, start + size + (rank < extra))


def loss_scale(part_len: int, batch_len: int, world: int) -> float:
    """The factor on a replica's mean loss that makes the mean of the N replicas' gradients, which data
    parallelism takes, the gradient of the whole global batch's mean loss."""
    return part_len * world / batch_len


def replica_weights(batch_len: int, world: int) -> np.ndarray:
    """Per-image weights of a global batch that apply loss_scale when the loss is a weighted mean over each
    replica's images (Keras' sample weights); float32, one per image."""
    weights = np.empty(batch_len, np.float32)
    for rank in range(world):
        part = replica_slice(batch_len, rank, world)
        weights[part] = loss_scale(part.stop - part.start, batch_len, world)
    return weights


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def train_batches(n: int, batch_size: int, world: int = 1) -> int:
    """Batches (steps) in one training epoch of n images."""
    return num_batches(trained_images(n, batch_size, world), batch_size)


# The stream of a run's random numbers that draws its batch-norm recalibration images (--bn-recalibration); epoch
# orders use [seed, epoch], and no run trains this many epochs.
RECALIBRATION_STREAM = 1_000_003


def recalibration_batches(n: int, images: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """Indices of min(images, n) training images drawn at random with the run's seed, as consecutive batches of
    batch_size (the last one smaller), in the drawn order: the splits are stored class by class, so sorted
    indices would make batches of one class, whose within-batch variance misses the variance between classes."""
    drawn = np.random.default_rng([seed, RECALIBRATION_STREAM]).permutation(n)[:images]
    return [drawn[start:start + batch_size] for start in range(0, len(drawn), batch_size)]
