"""The named models, as layer specs both backends build. Each ends in logits (no softmax)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.settings_group import SettingsGroup
from lab.specs.architectures import BatchNorm, Conv, Dense, Dropout, Flatten, Layer, MaxPool, ReLU, infer
from lab.specs.zoo import head_spec, is_backbone

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings

MODELS = ("first_cnn", "mlp", "cifar_cnn", "cnn")


@dataclass(frozen=True)
class ModelShape(SettingsGroup):
    """The settings that shape a model: which one, and the hyperparameters of each (--help says which model
    reads which)."""

    model: str
    filters: int
    kernel_size: int
    stride: int
    padding: str
    hidden: int
    layers: int
    width: int
    depth: int
    dense_units: int
    dropout: float
    blocks: int
    batch_norm: bool
    pool: bool


def first_cnn(s: ModelShape, num_classes: int) -> list[Layer]:
    """The lab's first CNN: one convolution, ReLU, Flatten, Dense to the classes."""
    return [Conv(s.filters, s.kernel_size, s.stride, s.padding), ReLU(), Flatten(), Dense(num_classes)]


def mlp(s: ModelShape, num_classes: int) -> list[Layer]:
    """The dense baseline: Flatten, then --layers hidden layers of --hidden units."""
    layers: list[Layer] = [Flatten()]
    for _ in range(s.layers):
        layers += [Dense(s.hidden), ReLU()]
    return layers + [Dense(num_classes)]


def cifar_cnn(s: ModelShape, num_classes: int) -> list[Layer]:
    """VGG-style: --depth blocks of two 3x3 convs with batch norm, pooling and dropout; a dense head."""
    layers: list[Layer] = []
    for block in range(s.depth):
        width = s.width * 2**block
        for _ in range(2):
            layers += [Conv(width, 3, 1, "same"), BatchNorm(), ReLU()]
        layers += [MaxPool(2), Dropout(s.dropout)]
    layers += [Flatten(), Dense(s.dense_units), BatchNorm(), ReLU(), Dropout(s.dropout), Dense(num_classes)]
    return layers


def cnn(s: ModelShape, num_classes: int) -> list[Layer]:
    """The configurable CNN the tuner searches: --blocks of [conv, batch norm?, ReLU, pool?, dropout],
    --filters doubling per block, then a dense head of --dense-units."""
    layers: list[Layer] = []
    for block in range(s.blocks):
        layers.append(Conv(s.filters * 2**block, s.kernel_size, 1, s.padding))
        layers += [BatchNorm()] if s.batch_norm else []
        layers.append(ReLU())
        layers += [MaxPool(2)] if s.pool else []
        layers += [Dropout(s.dropout)] if s.dropout else []
    layers += [Flatten(), Dense(s.dense_units), ReLU()]
    layers += [Dropout(s.dropout)] if s.dropout else []
    return layers + [Dense(num_classes)]


_BUILDERS = {"first_cnn": first_cnn, "mlp": mlp, "cifar_cnn": cifar_cnn, "cnn": cnn}


def model_spec(settings: ExperimentSettings, input_shape: tuple[int, int, int], num_classes: int) -> list[Layer]:
    """The spec for settings.model, checked against the input shape (LabError if it cannot work).

    For a zoo backbone (lab.specs.zoo), the spec of the new head on its pooled features."""
    if is_backbone(settings.model):
        return head_spec(settings, input_shape, num_classes)
    layers = _BUILDERS[settings.model](ModelShape.from_settings(settings), num_classes)
    infer(layers, input_shape)
    return layers
