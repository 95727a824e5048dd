"""A run's network described in plain types (lists, dicts, strings, numbers): layer specs or a zoo backbone with
its head, the input shape, the normalisation and the class names. Each backend builds its network from it, and a
Lightning checkpoint keeps it in its hyperparameters, so that the network is rebuilt without the dataset
(torch.load's weights_only reads nothing but plain types)."""
from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from lab.specs import architectures as A
from lab.specs.models import model_spec
from lab.specs.zoo import image_size, is_backbone

if TYPE_CHECKING:
    from datamodules.base import DataSplits
    from lab.config.settings import ExperimentSettings

_LAYERS = {cls.__name__: cls for cls in (A.Conv, A.Dense, A.ReLU, A.BatchNorm, A.MaxPool, A.Dropout, A.Flatten,
                                         A.GlobalAvgPool)}


def describe(settings: ExperimentSettings, splits: DataSplits) -> dict:
    """{"layers", "input_shape", "mean", "std", "class_names"} and, for a zoo backbone (whose head "layers"
    are), its family name ("zoo", lab.specs.zoo) and "image_size"."""
    description = {
        "layers": layers_to_plain(model_spec(settings, splits.input_shape, splits.num_classes)),
        "input_shape": [int(n) for n in splits.input_shape],
        "mean": [float(m) for m in splits.mean], "std": [float(s) for s in splits.std],
        "class_names": [str(name) for name in splits.class_names],
    }
    if is_backbone(settings.model):
        description.update(zoo=settings.model, image_size=image_size(settings))
    return description


def layers_to_plain(layers: list[A.Layer]) -> list[dict]:
    return [{"layer": type(layer).__name__, **asdict(layer)} for layer in layers]


def layers_from_plain(plain: list[dict]) -> list[A.Layer]:
    return [_LAYERS[item["layer"]](**{k: v for k, v in item.items() if k != "layer"}) for item in plain]
