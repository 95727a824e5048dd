"""The Keras side: tf.data pipelines built on the same arrays, batches gathered whole.

The training pipeline spans every epoch of the run (fit gets steps_per_epoch), and epoch e
visits the images in datamodules.batching.epoch_order(seed, e): the same order as the
PyTorch side, and a resumed run continues the sequence where it stopped. Batches are global: under
tf.distribute each replica trains on its slice, weighted as datamodules.batching.loss_scale says.
"""
from __future__ import annotations

import numpy as np

from core.frameworks import tf
from datamodules.base import ImageSet
from datamodules.batching import EVAL_BATCH_SIZE, epoch_order, replica_weights, train_batches, trained_images


def train_dataset(part: ImageSet, batch_size: int, seed: int, first_epoch: int, epochs: int,
                  augment=None, replicas: int = 1) -> tf.data.Dataset:
    """Global batches of every epoch from first_epoch (0-based) to epochs, shuffled per epoch.

    augment: an optional function (uint8 image batch, global batch index) -> augmented batch; the index
    counts from 0 at the run's first batch, so a resumed run continues the augmentation sequence.
    replicas: above 1, each batch carries sample weights that scale each replica's loss by its share.
    """
    n = len(part)
    images, labels = tf.constant(part.images), tf.constant(part.labels)

    def order(epoch):
        return epoch_order(n, seed, int(epoch), batch_size, replicas).astype(np.int64)

    def one_epoch(epoch):
        indices = tf.numpy_function(order, [epoch], tf.int64, stateful=False)
        indices.set_shape([trained_images(n, batch_size, replicas)])
        return tf.data.Dataset.from_tensor_slices(indices).batch(batch_size)

    batches = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
    batches = batches.map(lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)))
    if augment is not None:
        first_step = first_epoch * train_batches(n, batch_size, replicas)
        batches = batches.enumerate(first_step).map(lambda step, xy: (augment(xy[0], step), xy[1]),
                                                    num_parallel_calls=tf.data.AUTOTUNE)
    if replicas > 1:
        def weights(batch_len):
            return replica_weights(int(batch_len), replicas)

        batches = batches.map(lambda x, y: (x, y, tf.ensure_shape(
            tf.numpy_function(weights, [tf.shape(y)[0]], tf.float32, stateful=False), [None])))
    return batches.prefetch(tf.data.AUTOTUNE)


def eval_dataset(part: ImageSet, batch_size: int = EVAL_BATCH_SIZE) -> tf.data.Dataset:
    data = tf.data.Dataset.from_tensor_slices((part.images, part.labels))
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(part: ImageSet, batch_size: int, replicas: int = 1) -> int:
    return train_batches(len(part), batch_size, replicas)
