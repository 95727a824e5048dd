"""ExperimentSettings in typed groups: each setting belongs to exactly one (tests/test_settings_types.py).

`ExperimentSettings` stays flat: it is the command line, the `--config` YAML and a run's `settings.json`, which
reuse compares. The groups are frozen views of it, for code that needs only one part: the model's shape
(`ModelShape`), augmentation (`AugmentSpec`), transfer (`TransferSpec`), devices (`DeviceSpec`), the data
(`DataSpec`) and the run itself (`RunSpec`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.config.devices import DeviceSpec
from lab.specs.augmentation import AugmentSpec
from lab.specs.models import ModelShape
from lab.specs.phases import TransferSpec

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings


@dataclass(frozen=True)
class DataSpec:
    """Which images a run sees: the dataset, its classes and sample, the validation split, the image size."""

    dataset: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    resize: str = "stretch"
    classes: str | None = None
    train_images: int | None = None
    val_fraction: float = 0.1

    @classmethod
    def from_settings(cls, settings: ExperimentSettings) -> DataSpec:
        return cls(settings.dataset, settings.data_dir, settings.image_size, settings.resize, settings.classes,
                   settings.train_images, settings.val_fraction)


@dataclass(frozen=True)
class RunSpec:
    """The run itself: how long and how it optimises, its seed, which weights are tested, where it is written and
    what it writes besides the results."""

    epochs: int = 5
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    seed: int = 0
    test_weights: str = "last"
    out: str = "runs"
    name: str | None = None
    save_augmented: bool = False
    profile: bool = True

    @classmethod
    def from_settings(cls, settings: ExperimentSettings) -> RunSpec:
        return cls(settings.epochs, settings.batch_size, settings.optimizer, settings.lr, settings.seed,
                   settings.test_weights, settings.out, settings.name, settings.save_augmented, settings.profile)


GROUPS = (ModelShape, AugmentSpec, TransferSpec, DeviceSpec, DataSpec, RunSpec)
