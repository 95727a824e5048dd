"""Build a Keras model from a layer spec. It takes uint8 images and returns logits.

Keras' defaults are the shared initialisation scheme: Glorot-uniform kernels, zero biases.
"""
from __future__ import annotations

import numpy as np

from core.frameworks import keras
from lab.specs import architectures as A

L = keras.layers


def build_network(spec: list[A.Layer], input_shape: tuple[int, int, int], mean, std, name: str = "model",
                sync_batchnorm: bool = False) -> keras.Model:
    """sync_batchnorm: BatchNorm statistics over the replicas of a tf.distribute strategy."""
    inputs = keras.Input(shape=input_shape, dtype="uint8", name="images")
    x = L.Rescaling(1.0 / 255)(inputs)
    x = L.Normalization(mean=list(mean), variance=list(np.square(std)))(x)
    for layer in spec:
        x = _layer(layer, sync_batchnorm)(x)
    # Logits in float32 even under mixed precision, for a stable loss.
    outputs = L.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def spec_layers(spec: list[A.Layer]) -> list[L.Layer]:
    """Fresh Keras layers for a spec's layers, in order (e.g. a head to put on a backbone)."""
    return [_layer(layer) for layer in spec]


def _layer(layer: A.Layer, sync_batchnorm: bool = False) -> L.Layer:
    if isinstance(layer, A.Conv):
        return L.Conv2D(layer.filters, layer.kernel, strides=layer.stride, padding=layer.padding)
    if isinstance(layer, A.Dense):
        return L.Dense(layer.units)
    if isinstance(layer, A.BatchNorm):
        return L.BatchNormalization(synchronized=sync_batchnorm)
    if isinstance(layer, A.MaxPool):
        return L.MaxPooling2D(layer.size)
    if isinstance(layer, A.Dropout):
        return L.Dropout(layer.rate)
    if isinstance(layer, A.ReLU):
        return L.ReLU()
    if isinstance(layer, A.Flatten):
        return L.Flatten()
    if isinstance(layer, A.GlobalAvgPool):
        return L.GlobalAveragePooling2D()
    raise TypeError(f"unknown layer spec {layer!r}")


def count_params(model: keras.Model) -> A.ParamCount:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return A.ParamCount(trainable, frozen)


def count_flops(model: keras.Model) -> int:
    """Forward FLOPs of one image: 2 per multiply-add of the Conv2D, DepthwiseConv2D and Dense layers, nested
    models included (lab.specs.architectures.forward_flops' definition, FlopCounterMode's on the PyTorch side)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_flops(layer)
        elif isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.Dense)):
            total += _layer_flops(layer)
    return total


def _layer_flops(layer: L.Layer) -> int:
    """A layer called once (layer.input, layer.output) on one image's shape."""
    outputs, inputs = int(np.prod(layer.output.shape[1:])), layer.input.shape
    if isinstance(layer, L.Dense):
        return 2 * outputs * inputs[-1]
    window = int(np.prod(layer.kernel_size))
    if isinstance(layer, L.DepthwiseConv2D):  # each output channel sees one input channel
        return 2 * outputs * window
    return 2 * outputs * window * inputs[-1] // layer.groups
