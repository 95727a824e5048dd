"""Keras' exports of a checkpoint, through Keras's own `model.export(format=...)`: ONNX (via tf2onnx), a TensorFlow
SavedModel and a LiteRT .tflite file, each taking uint8 N x H x W x C `images` with a dynamic batch and run back in
its own runtime (onnxruntime, tf.saved_model.load, ai_edge_litert) for the parity check of lab.export.

The exported model is float32: a checkpoint of a mixed-precision run is cloned with a float32 policy, its weights
copied (they are float32 under every policy). For ONNX, the clone also applies the Normalization layer's affine map
with a Rescaling layer: Normalization keeps its mean and variance as eager tensors, which the traced function
captures and tf2onnx turns into extra graph inputs; Rescaling casts its constants inside the call. Every format
exports the model called with training=False (in_inference_mode).
"""
from __future__ import annotations

import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

from core.frameworks import keras, tf
from datamodules.batching import EVAL_BATCH_SIZE
from lab.export.onnx_file import INPUT_NAME, ONNX_OPSET, name_io, run_onnx
from lab.run.backend import Exported

L = keras.layers
FORMATS = ("onnx", "saved_model", "litert")
PACKAGES = ("keras", "tensorflow", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")


def export_checkpoint(checkpoint: Path, fmt: str, path: Path, images: np.ndarray) -> Exported:
    """Export the model of a .keras checkpoint to `path` in `fmt`; the float32 model's logits on `images` and the
    exported file's, run in its own runtime."""
    loaded = keras.models.load_model(checkpoint, safe_mode=True)
    reference = float32_model(loaded)
    export_model(reference, fmt, path)
    details = {"opset": ONNX_OPSET if fmt == "onnx" else None, "dtype_policies": _policies(loaded),
               "versions": {p: metadata.version(p) for p in PACKAGES}}
    return Exported(_logits(reference, images), RUNTIMES[fmt](path, images), details)


def export_model(model: keras.Model, fmt: str, path: Path) -> None:
    """Write a float32 model (uint8 N x H x W x C -> logits) to `path` with Keras's model.export."""
    exported = in_inference_mode(onnx_ready(model) if fmt == "onnx" else model)
    signature = [keras.InputSpec(shape=(None, *model.input_shape[1:]), dtype="uint8", name=INPUT_NAME)]
    options = {"opset_version": ONNX_OPSET} if fmt == "onnx" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Keras's patch of tf2onnx for numpy 2 checks np.object
        exported.export(str(path), format=_KERAS_FORMATS[fmt], input_signature=signature, verbose=False, **options)
    if fmt == "onnx":
        name_io(path)


_KERAS_FORMATS = {"onnx": "onnx", "saved_model": "tf_saved_model", "litert": "litert"}


def in_inference_mode(model: keras.Model) -> keras.Model:
    """`model` called with training=False in a functional model. Keras's exporter calls the model without it, and a
    keras.applications backbone then runs its batch norm in training mode (found on MobileNetV3Small, trained from
    scratch: the export's logits differed from predict's by up to 12)."""
    inputs = keras.Input(shape=model.input_shape[1:], dtype="uint8", name=INPUT_NAME)
    return keras.Model(inputs, model(inputs, training=False), name=f"{model.name}-inference")


def float32_model(model: keras.Model) -> keras.Model:
    """`model` itself when every layer computes in float32, else a float32 clone with its weights."""
    if all(policy == "float32" for policy in _policies(model)):
        return model
    return _clone(model, lambda layer: _from_config(layer, layer.get_config()))


def onnx_ready(model: keras.Model) -> keras.Model:
    """A float32 clone of `model` with every Normalization replaced by the Rescaling of the same affine map."""
    def clone(layer):
        if isinstance(layer, L.Normalization) and not layer.invert:
            scale = 1.0 / np.maximum(np.sqrt(np.asarray(layer.variance)), keras.backend.epsilon())
            offset = -np.asarray(layer.mean) * scale
            return L.Rescaling(scale.reshape(-1).tolist(), offset.reshape(-1).tolist(), name=layer.name,
                               dtype="float32")
        return _from_config(layer, layer.get_config())
    return _clone(model, clone)


def _from_config(layer, config: dict):
    """A fresh copy of a layer in float32 (a functional graph's plain operations, keras.ops.add..., have no dtype)."""
    return layer.__class__.from_config({**config, "dtype": "float32"} if "dtype" in config else config)


def _clone(model: keras.Model, clone_function) -> keras.Model:
    clone = keras.models.clone_model(model, clone_function=clone_function, recursive=True)
    clone.set_weights(model.get_weights())  # Normalization with a given mean and Rescaling hold no weights
    return clone


def _policies(model: keras.Model) -> list[str]:
    names = []
    for layer in model.layers:
        names += _policies(layer) if isinstance(layer, keras.Model) else [layer.dtype_policy.name]
    return sorted(set(names))


def _logits(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return model.predict(images, batch_size=EVAL_BATCH_SIZE, verbose=0)


def _saved_model_logits(path: Path, images: np.ndarray) -> np.ndarray:
    loaded = tf.saved_model.load(str(path))  # held: its variables go with it
    return np.concatenate([loaded.serve(tf.constant(images[i:i + EVAL_BATCH_SIZE])).numpy()
                           for i in range(0, len(images), EVAL_BATCH_SIZE)])


def _litert_logits(path: Path, images: np.ndarray) -> np.ndarray:
    """The .tflite file run by LiteRT's interpreter (tf.lite.Interpreter is being removed), the input resized to each
    batch, as its batch axis is dynamic."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    source, = interpreter.get_input_details()
    target, = interpreter.get_output_details()
    out = []
    for i in range(0, len(images), EVAL_BATCH_SIZE):
        batch = images[i:i + EVAL_BATCH_SIZE]
        interpreter.resize_tensor_input(source["index"], batch.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(source["index"], batch)
        interpreter.invoke()
        out.append(interpreter.get_tensor(target["index"]).copy())
    return np.concatenate(out)


RUNTIMES = {"onnx": run_onnx, "saved_model": _saved_model_logits, "litert": _litert_logits}
