"""scikit-learn's bundled 8x8 digits: 1797 images that need no download, for quick runs and tests."""
from __future__ import annotations

import numpy as np

from datamodules.base import ImageSet, RawDataset


def load_digits() -> RawDataset:
    """The digits as N x 8 x 8 x 1 uint8 (values 0..16 scaled to 0..255), classes "0".."9", no test set."""
    from sklearn.datasets import load_digits as sklearn_digits  # lazy: sklearn is slow to import

    bunch = sklearn_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    train = ImageSet(images=images, labels=bunch.target.astype(np.int64))
    classes = tuple(str(i) for i in range(10))
    return RawDataset(name="digits", train=train, test=None, class_names=classes,
                      source="sklearn.datasets.load_digits")
