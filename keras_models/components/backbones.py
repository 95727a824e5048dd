"""Keras models for transfer learning, split into backbone blocks and a head (see lab.specs.phases).

Zoo backbones come from keras.applications without their top: uint8 images are resized on the fly
(a Resizing layer, left out when the images were resized to --image-size at load) and preprocessed by the
family's preprocess_input, inside the model; a pretrained backbone is called with training=False, as in
the keras.io transfer-learning guide, so its BatchNorm layers run in inference mode whatever is trainable.
Project models are the usual lab.specs.models networks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import LabError, one_line
from core.frameworks import keras
from core.io import download_timeout
from datamodules.base import DataSplits
from keras_models.components.network import build_network, count_flops, spec_layers
from lab.specs.models import model_spec
from lab.specs.phases import Phase, has_params, is_pretrained, spec_blocks, trains_block
from lab.specs.zoo import BACKBONES, image_size, is_backbone

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings

L = keras.layers


@keras.saving.register_keras_serializable(package="dual_lab")
class ZooPreprocess(L.Layer):
    """keras.applications.<family>.preprocess_input as a layer: a Lambda would not load in safe mode."""

    def __init__(self, family: str, **kwargs):
        super().__init__(**kwargs)
        self.family = family

    def call(self, x):
        return getattr(keras.applications, self.family).preprocess_input(x)

    def get_config(self) -> dict:
        return {**super().get_config(), "family": self.family}


@dataclass
class TransferParts:
    net: keras.Model
    blocks: list[list[L.Layer]]  # the backbone's layers holding weights, per block, from the input up
    head: L.Layer  # the Dense layer holding the class weights
    zoo_name: str | None = None  # the keras.applications model, for zoo backbones


def build_transfer(settings: ExperimentSettings, splits: DataSplits, zoo_weights: str | None) -> TransferParts:
    """A new model; zoo_weights: None, 'imagenet' or a keras.applications .h5 file for the backbone."""
    spec = model_spec(settings, splits.input_shape, splits.num_classes)
    if is_backbone(settings.model):
        model = _zoo_model(settings, splits, spec, zoo_weights)
    else:
        model = build_network(spec, splits.input_shape, splits.mean, splits.std, name=settings.model)
    return transfer_parts(model, settings, splits)


def transfer_parts(model: keras.Model, settings: ExperimentSettings, splits: DataSplits) -> TransferParts:
    """The blocks and head of a model built by build_transfer (or loaded from its checkpoint)."""
    head = [layer for layer in model.layers if isinstance(layer, L.Dense)][-1]
    if is_backbone(settings.model):
        base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        blocks: dict[int, list[L.Layer]] = {}
        for layer in base.layers:
            if layer.weights:
                blocks.setdefault(keras_block(settings.model, layer.name), []).append(layer)
        return TransferParts(model, [blocks[i] for i in sorted(blocks)], head, BACKBONES[settings.model].keras)
    spec = model_spec(settings, splits.input_shape, splits.num_classes)
    weighted = [layer for layer in model.layers if layer.weights]
    assert len(weighted) == sum(has_params(layer) for layer in spec)
    return TransferParts(model, [[weighted[i] for i in block] for block in spec_blocks(spec)], head)


def zoo_flops(model: keras.Model, settings: ExperimentSettings) -> int | None:
    """Forward FLOPs of one image through a zoo backbone's model, its head included (count_flops); None for a spec
    network, which lab.specs.architectures.forward_flops counts from its spec."""
    return count_flops(model) if is_backbone(settings.model) else None


def keras_block(model: str, layer: str) -> int:
    """The block (lab.specs.zoo) a keras.applications layer belongs to, read from its name."""
    if model == "resnet":  # conv1_*, then the stages conv2_* .. conv5_*
        match = re.match(r"conv(\d)_", layer)
        return int(match.group(1)) - 1 if match else 0
    if model == "mobilenet":  # conv, expanded_conv_*, expanded_conv_1_* .. expanded_conv_10_*, conv_1
        match = re.match(r"expanded_conv_(\d+)_", layer)
        if match:
            return int(match.group(1)) + 1
        return 1 if layer.startswith("expanded_conv_") else 12 if layer.startswith("conv_1") else 0
    match = re.match(r"block(\d)", layer)  # efficientnet: stem_*, block1a_* .. block7a_*, top_*
    return int(match.group(1)) if match else 8 if layer.startswith("top_") else 0


def set_trainable(parts: TransferParts, phase: Phase) -> None:
    """Which layers train in `phase`; BatchNorm only when every layer trains (recompile afterwards)."""
    for index, block in enumerate(parts.blocks):
        on = trains_block(phase, index, len(parts.blocks))
        for layer in block:
            layer.trainable = on and (phase.trainable_blocks is None or not isinstance(layer, L.BatchNormalization))


def _zoo_model(settings: ExperimentSettings, splits: DataSplits, head_spec, zoo_weights: str | None) -> keras.Model:
    family, size = BACKBONES[settings.model], image_size(settings)
    inputs = keras.Input(shape=splits.input_shape, dtype="uint8", name="images")
    x = L.Rescaling(1.0, name="to_float")(inputs)
    if splits.input_shape[:2] != (size, size):  # a folder's images resized at load need no second resize
        x = L.Resizing(size, size, name="resize")(x)
    if splits.input_shape[-1] == 1:
        x = L.Concatenate(name="gray_to_rgb")([x, x, x])
    x = ZooPreprocess(family.keras_preprocess, name="preprocess")(x)
    base = _application(settings.model, size, zoo_weights)
    x = base(x, training=False) if is_pretrained(settings) else base(x)
    for layer in spec_layers(head_spec):
        x = layer(x)
    outputs = L.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=settings.model)


def _application(model: str, size: int, weights: str | None) -> keras.Model:
    name = BACKBONES[model].keras
    build = getattr(keras.applications, name)
    try:
        with download_timeout():
            return build(include_top=False, weights=weights, input_shape=(size, size, 3), pooling="avg")
    except Exception as e:  # noqa: BLE001  a failed download or a file Keras cannot use, whatever the error
        why = one_line(e, limit=200)
        if weights == "imagenet":
            raise LabError(f"cannot download the ImageNet weights of {name} ({why}) and Keras' cache has no copy "
                           f"(looked in {keras.src.backend.config.keras_home()}/models); copy the no-top weights "
                           "file there or pass --weights FILE.") from None
        raise LabError(f"--weights {weights} does not fit keras.applications.{name} without its top ({why}); "
                       "give that model's no-top .h5 weights file.") from None
