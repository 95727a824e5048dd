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
from lab.settings_group import SettingsGroup
from lab.specs.augmentation import AugmentSpec
from lab.specs.models import ModelShape
from lab.specs.phases import TransferSpec

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class DataSpec(SettingsGroup):
    """Which images a run sees: the dataset, its classes and sample, the validation split, the image size."""

    dataset: str
    data_dir: str | None
    image_size: int | None
    resize: str
    classes: str | None
    train_images: int | None
    val_fraction: float


@dataclass(frozen=True)
class RunSpec(SettingsGroup):
    """The run itself: how long and how it optimises, its seed, which weights are tested and whether their batch
    norms are recalibrated, where it is written and what it writes besides the results."""

    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    seed: int
    test_weights: str
    bn_recalibration: int
    out: str
    name: str | None
    save_augmented: bool
    profile: bool


GROUPS = (ModelShape, AugmentSpec, TransferSpec, DeviceSpec, DataSpec, RunSpec)
