"""The Keras side of lab.specs.augmentation: whole uint8 N x H x W x C batches, mapped in the tf.data pipeline.

The stock preprocessing layers do not all mean what lab.specs.augmentation defines: RandomCrop draws one
offset per batch, RandomBrightness adds instead of multiplying, RandomContrast centres each channel
on its own mean, there is no cutout, and their seed-generator state makes a parallel tf.data map
irreproducible. So the draws come from lab.specs.augmentation.draw (seeded by the global batch index) and
are applied with batched tensor operations; the rotation uses keras.ops.image.affine_transform.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.frameworks import keras, tf
from lab.specs import augmentation as A

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings


def build_augment(settings: ExperimentSettings, image_size: tuple[int, int]):
    """The train_dataset `augment` hook, (uint8 images, global batch index) -> augmented; None when off."""
    spec = A.AugmentSpec.from_settings(settings)
    if not spec.active:
        return None

    def draws_of(n, step):
        return A.draw(spec, int(n), settings.seed, int(step), image_size)

    def augment(images: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        draws = tf.numpy_function(draws_of, [tf.shape(images)[0], step], tf.float32, stateful=False)
        draws.set_shape([None, A.NUM_COLUMNS])
        return apply(images, spec, draws)

    return augment


def apply(images: tf.Tensor, spec: A.AugmentSpec, draws: tf.Tensor) -> tf.Tensor:
    """Augment uint8 N x H x W x C images with the draws (lab.specs.augmentation columns)."""
    if spec.flip:
        images = tf.where(draws[:, A.FLIP][:, None, None, None] > 0, tf.reverse(images, [2]), images)
    if spec.crop_pad:
        images = _crop(images, spec.crop_pad, tf.cast(draws[:, A.SHIFT], tf.int32))
    if spec.rotate or spec.color_jitter:
        x = tf.cast(images, tf.float32)
        x = _rotate(x, draws[:, A.AFFINE]) if spec.rotate else x
        x = _jitter(x, draws[:, A.JITTER]) if spec.color_jitter else x
        images = tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)
    if spec.cutout:
        mask = _square_mask(tf.shape(images)[1:3], tf.cast(draws[:, A.CUTOUT], tf.int32), spec.cutout)
        images = tf.where(mask, tf.zeros_like(images), images)
    return images


def apply_numpy(images: np.ndarray, spec: A.AugmentSpec, draws: np.ndarray) -> np.ndarray:
    return apply(tf.constant(images), spec, tf.constant(draws)).numpy()


def _crop(images: tf.Tensor, pad: int, shift: tf.Tensor) -> tf.Tensor:
    """Zero-pad by `pad`, then crop H x W at offset pad + shift (per image): two batched gathers."""
    shape = tf.shape(images)
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    rows = shift[:, 0:1] + pad + tf.range(shape[1])[None]
    cols = shift[:, 1:2] + pad + tf.range(shape[2])[None]
    return tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)


def _rotate(x: tf.Tensor, maps: tf.Tensor) -> tf.Tensor:
    # affine_transform's 8-number transform: the 6 of the inverse map, then no projective part
    transform = tf.concat([maps, tf.zeros_like(maps[:, :2])], axis=1)
    return keras.ops.image.affine_transform(x, transform, interpolation="bilinear", fill_mode="constant",
                                            fill_value=0, data_format="channels_last")


def _jitter(x: tf.Tensor, factors: tf.Tensor) -> tf.Tensor:
    brightness, contrast = factors[:, 0, None, None, None], factors[:, 1, None, None, None]
    x = x * brightness
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * contrast + mean


def _square_mask(size: tf.Tensor, corner: tf.Tensor, side: int) -> tf.Tensor:
    """True inside each image's square: N x H x W x 1."""
    rows = tf.range(size[0])[None] - corner[:, 0:1]
    cols = tf.range(size[1])[None] - corner[:, 1:2]
    inside_rows = (rows >= 0) & (rows < side)
    inside_cols = (cols >= 0) & (cols < side)
    return (inside_rows[:, :, None] & inside_cols[:, None, :])[..., None]
