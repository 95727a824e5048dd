"""Images brought to one square side at load (--image-size N gives N x N pixels), the same way for every image.

Two policies for images that are not square, as Keras' `image_dataset_from_directory` offers them:
`stretch` (the default, as Keras' default) squeezes the whole image into N x N, changing its proportions;
`crop` first keeps the largest centred square, as `crop_to_aspect_ratio=True` does, so nothing is distorted
but the edges of the longer side are lost. Every image goes through PIL's bilinear filter, which also
antialiases when it shrinks (as torchvision's `Resize` does by default). An image already N x N is left as it is.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from datamodules.base import ImageSet, RawDataset

RESIZE_POLICIES = ("stretch", "crop")


def resize_image(image, size: int, policy: str):
    """A PIL image at size x size under `policy`."""
    return resize_to(image, (size, size), policy)


def resize_to(image, width_height: tuple[int, int], policy: str):
    """A PIL image at width x height under `policy` (crop: the largest centred part of that aspect ratio)."""
    from PIL import Image, ImageOps  # lazy: keeps `import datamodules` light

    if image.size == tuple(width_height):
        return image
    if policy == "crop":
        return ImageOps.fit(image, tuple(width_height), method=Image.Resampling.BILINEAR)
    return image.resize(tuple(width_height), Image.Resampling.BILINEAR)


def resize_array(images: np.ndarray, size: int, policy: str) -> np.ndarray:
    """N x H x W x C uint8 (C = 1 or 3) -> N x size x size x C, image by image."""
    from PIL import Image

    if images.shape[1:3] == (size, size):
        return images
    channels = images.shape[-1]
    out = np.empty((len(images), size, size, channels), dtype=np.uint8)
    for i, array in enumerate(images):
        image = Image.fromarray(array[..., 0] if channels == 1 else array)
        out[i] = np.asarray(resize_image(image, size, policy)).reshape(size, size, channels)
    return out


def resize_raw(raw: RawDataset, size: int | None, policy: str) -> RawDataset:
    """The dataset with every image at size x size; `raw` itself when size is None or already met."""
    if size is None or raw.train.images.shape[1:3] == (size, size):
        return raw

    def resized(part: ImageSet | None) -> ImageSet | None:
        return None if part is None else ImageSet(resize_array(part.images, size, policy), part.labels)

    return dataclasses.replace(raw, train=resized(raw.train), test=resized(raw.test))

