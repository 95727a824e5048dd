"""Initial weights of a Keras transfer run: ImageNet or a keras.applications .h5 file (loaded by Keras while
the backbone is built), or the .keras checkpoint of an earlier run, loaded in safe mode and copied variable
by variable with shape checks; the head is copied only if it was trained on this run's classes."""
from __future__ import annotations

from pathlib import Path

from core.errors import LabError, one_line
from core.frameworks import keras
from keras_models.components import backbones  # noqa: F401  registers ZooPreprocess, which zoo checkpoints hold
from keras_models.components.backbones import TransferParts
from lab.specs.weight_sources import WeightsSource, head_status, keeps_head, mismatch_sentence
from lab.specs.zoo import is_backbone


def zoo_weights(source: WeightsSource, model: str) -> str | None:
    """What keras.applications builds the backbone with: 'imagenet', an .h5 file, or None."""
    if source.format == "hdf5" and not is_backbone(model):
        raise LabError(f"--weights {source.path} is an .h5 weights file, which is for the zoo backbones; a {model} "
                       "run takes the .keras checkpoint (or the folder) of an earlier run.")
    if source.kind == "imagenet":
        return "imagenet"
    return str(source.path) if source.format == "hdf5" else None


def load_checkpoint(parts: TransferParts, path: Path, class_names) -> str:
    """Copy a .keras checkpoint's weights into parts.net; returns what became of the head."""
    try:
        saved = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # noqa: BLE001  Keras raises many kinds for a file it cannot read
        why = one_line(e, limit=200)
        raise LabError(f"--weights {path} does not load as a Keras model ({why}); give the .keras checkpoint "
                       "of a Keras run.") from None
    saved_head = [layer for layer in saved.layers if isinstance(layer, keras.layers.Dense)]
    ours, theirs = _body(parts.net, parts.head), _body(saved, saved_head[-1] if saved_head else None)
    wrong = [(t.path, tuple(t.shape), tuple(o.shape)) for o, t in zip(ours, theirs) if tuple(o.shape) != tuple(t.shape)]
    if len(ours) != len(theirs) or wrong:
        missing = [w.path for w in ours[len(theirs):]]
        unexpected = [w.path for w in theirs[len(ours):]]
        raise LabError(f"--weights {path} {mismatch_sentence(missing, unexpected, wrong)}")
    for mine, loaded in zip(ours, theirs):
        mine.assign(loaded)
    if not saved_head:
        return head_status(None, class_names)
    shapes_fit = [tuple(w.shape) for w in saved_head[-1].weights] == [tuple(w.shape) for w in parts.head.weights]
    keep = keeps_head(path, class_names, shapes_fit)
    if keep:
        for mine, loaded in zip(parts.head.weights, saved_head[-1].weights):
            mine.assign(loaded)
    return head_status(saved_head[-1].units, class_names, keep, path)


def _body(model: keras.Model, head) -> list:
    """The model's variables but the head's, in Keras' stable order."""
    skip = {id(w) for w in head.weights} if head is not None else set()
    return [w for w in model.weights if id(w) not in skip]
