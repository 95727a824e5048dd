"""Model-zoo backbones: the facts both backends share, and the head put on top of them.

`--model resnet | mobilenet | efficientnet` picks a family; each framework builds it from its own zoo:

| --model      | torchvision.models  | keras.applications | blocks (--unfreeze counts these)       |
|--------------|---------------------|--------------------|----------------------------------------|
| resnet       | resnet18            | ResNet50           | 5: stem, then the four residual stages |
| mobilenet    | mobilenet_v3_small  | MobileNetV3Small   | 13: stem, 11 inverted residuals, last conv |
| efficientnet | efficientnet_b0     | EfficientNetB0     | 9: stem, the seven MBConv stages, top conv |

keras.applications has no ResNet18, so `resnet` differs in depth (and parameter count) between the
backends; the two other families are the same networks on both sides. The network sees images of
--image-size (default the zoo's 224): a folder dataset's images are resized to it at load (lab.config.data),
the others on the fly, inside the network, which also preprocesses them as the zoo's weights expect;
the backbone's globally pooled features feed the new head, described once here as a spec.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.errors import LabError
from lab.specs.architectures import Dense, Dropout, Layer

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings

MIN_IMAGE_SIZE = 32  # five stride-2 stages: smaller images vanish before the pooling


@dataclass(frozen=True)
class Backbone:
    torchvision: str  # torchvision.models builder
    keras: str  # keras.applications class
    blocks: int  # groups of layers --unfreeze counts, from the input up; the same count on both sides
    keras_preprocess: str  # keras.applications module whose preprocess_input the Keras model applies
    input_size: int = 224


BACKBONES = {
    "resnet": Backbone("resnet18", "ResNet50", 5, "resnet50"),
    "mobilenet": Backbone("mobilenet_v3_small", "MobileNetV3Small", 13, "mobilenet_v3"),
    "efficientnet": Backbone("efficientnet_b0", "EfficientNetB0", 9, "efficientnet"),
}
BACKBONE_NAMES = tuple(BACKBONES)


def is_backbone(model: str) -> bool:
    return model in BACKBONES


def image_size(settings: ExperimentSettings) -> int:
    """The side images are resized to before the backbone."""
    return settings.image_size or BACKBONES[settings.model].input_size


def head_spec(settings: ExperimentSettings, input_shape: tuple[int, int, int], num_classes: int) -> list[Layer]:
    """The new classification head on the pooled features: dropout, then a dense layer to the classes.

    LabError if the images cannot go through the backbone.
    """
    if input_shape[-1] not in (1, 3):
        raise LabError(f"--model {settings.model} takes RGB or grayscale images, but these have "
                       f"{input_shape[-1]} channels; use a project model such as cifar_cnn.")
    check_image_size(image_size(settings))
    return [Dropout(settings.dropout), Dense(num_classes)]


def check_image_size(size: int) -> None:
    if size < MIN_IMAGE_SIZE:
        raise LabError(f"image-size must be at least {MIN_IMAGE_SIZE} pixels for the zoo backbones, got {size}.")
