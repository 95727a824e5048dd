"""The data a run's settings ask for, loaded the same way by every command that trains or checks shapes."""
from __future__ import annotations

from typing import TYPE_CHECKING

from datamodules import DataSplits, load_splits
from lab.specs.zoo import is_backbone

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings


def load_size(settings: ExperimentSettings) -> int | None:
    """The side images are resized to at load: --image-size, except for a zoo backbone on a dataset of one
    fixed size (mnist, cifar10...), which resizes on the fly inside the network, so that memory holds the
    small images (CIFAR-10's 60,000 are 184 MB at 32 x 32, 9 GB at 224 x 224)."""
    if settings.dataset != "folder" and is_backbone(settings.model):
        return None
    return settings.image_size


def load_data(settings: ExperimentSettings, train_images: bool = True) -> DataSplits:
    """The settings' splits: dataset, classes, seed, validation fraction, image size and, unless told not to,
    the sample of --train-images."""
    return load_splits(settings.dataset, settings.data_dir, settings.seed, settings.val_fraction,
                       classes=settings.classes, train_images=settings.train_images if train_images else None,
                       image_size=load_size(settings), resize=settings.resize)
