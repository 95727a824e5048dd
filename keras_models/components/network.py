"""Build a Keras model from a layer spec. It takes uint8 images and returns logits.

Keras' defaults are the shared initialisation scheme: Glorot-uniform kernels, zero biases.
"""
from __future__ import annotations

import numpy as np

from core.frameworks import keras
from lab.specs import architectures as A

L = keras.layers


@keras.saving.register_keras_serializable(package="dual_lab")
class BatchNormalization(L.BatchNormalization):
    """Keras' BatchNormalization computed by TensorFlow's fused kernel (FusedBatchNormV3, oneDNN's on x86), one
    operation forward and one backward, where Keras 3 runs the moments and the normalization as separate float32
    operations (bench/README.md, "bf16-mixed on the CPU"). The same weights, names, epsilon and momentum, and the
    same statistics: the moving variance takes the batch's biased variance, as Keras' moments do, where the kernel
    returns the unbiased one. bf16 and float16 inputs stay so; the kernel computes in float32 inside. Inputs it
    does not take (not 4-D NHWC, a mask, renorm, cross-replica statistics, float64) go to Keras' own call.
    Named as Keras' class, so that its layers' names (batch_normalization_1, ...) and the paths of its weights in
    a .keras or .weights.h5 file (from the class name) are those of Keras' layer, both ways."""

    def call(self, inputs, training=None, mask=None):
        if not self._fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        from core.frameworks import tf

        fused_batch_norm = tf.compat.v1.nn.fused_batch_norm  # FusedBatchNormV3; TF 2's tf.nn does not export it
        scale = self.gamma if self.scale else tf.ones(inputs.shape[-1])
        offset = self.beta if self.center else tf.zeros(inputs.shape[-1])
        if not (training and self.trainable):
            return fused_batch_norm(inputs, scale, offset, self.moving_mean, self.moving_variance,
                                    epsilon=self.epsilon, is_training=False)[0]
        outputs, mean, variance = fused_batch_norm(inputs, scale, offset, epsilon=self.epsilon)
        count = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], "float32")
        variance = variance * ((count - 1) / count)  # Bessel's correction undone
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs

    def _fused(self, inputs, mask) -> bool:
        return (len(inputs.shape) == 4 and self.axis in (-1, 3) and mask is None and not self.renorm
                and not self.synchronized and keras.backend.standardize_dtype(inputs.dtype) != "float64"
                and keras.backend.backend() == "tensorflow")


# The layer build_network makes of a BatchNorm spec: the fused one, a cifar_cnn step 1.19-1.28x (float32) and
# 1.39-1.46x (bf16-mixed) as fast as with Keras' own (bench/README.md, "Keras' batch norm, fused").
# bench.keras_batchnorm swaps it.
BATCH_NORM = BatchNormalization


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
        return BATCH_NORM(synchronized=sync_batchnorm)
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


def all_layers(model: keras.Model):
    """Every layer of `model`, those of the models nested in it (a zoo backbone) included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


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
