"""Architectures described once, as a list of layer specs, and built by each backend.

Shape inference and parameter counting live here too, so impossible shapes are refused
before any framework is touched, and both backends can be checked against one count.
Parameter counts follow Keras' convention: BatchNorm's moving mean and variance count as
non-trainable parameters. FLOPs (`forward_flops`) follow torch.utils.flop_counter.FlopCounterMode's.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.errors import LabError

PADDINGS = ("valid", "same")


@dataclass(frozen=True)
class Conv:
    filters: int
    kernel: int
    stride: int = 1
    padding: str = "valid"


@dataclass(frozen=True)
class Dense:
    units: int


@dataclass(frozen=True)
class ReLU:
    pass


@dataclass(frozen=True)
class BatchNorm:
    pass


@dataclass(frozen=True)
class MaxPool:
    size: int = 2


@dataclass(frozen=True)
class Dropout:
    rate: float


@dataclass(frozen=True)
class Flatten:
    pass


@dataclass(frozen=True)
class GlobalAvgPool:
    pass


Layer = Conv | Dense | ReLU | BatchNorm | MaxPool | Dropout | Flatten | GlobalAvgPool


@dataclass(frozen=True)
class ParamCount:
    trainable: int
    non_trainable: int

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable


def conv_output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after): the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def infer(layers: list[Layer], input_shape: tuple[int, int, int]) -> tuple[list[tuple], ParamCount]:
    """Output shape after each layer (H, W, C) or (features,), and the parameter count.

    Raises LabError for shapes that cannot work.
    """
    shape: tuple = tuple(input_shape)
    shapes, trainable, frozen = [], 0, 0
    for i, layer in enumerate(layers):
        shape, t, n = _step(layer, shape, i)
        trainable, frozen = trainable + t, frozen + n
        shapes.append(shape)
    return shapes, ParamCount(trainable, frozen)


def _step(layer: Layer, shape: tuple, index: int) -> tuple[tuple, int, int]:
    where = f"layer {index + 1} ({type(layer).__name__})"
    if isinstance(layer, Conv):
        return _conv_step(layer, shape, where)
    if isinstance(layer, MaxPool):
        _need_image(shape, where)
        h, w, c = shape
        if layer.size < 1 or layer.size > min(h, w):
            raise LabError(f"{where}: pooling size {layer.size} does not fit the {h}x{w} feature map; "
                           "use fewer conv blocks or a smaller pool.")
        return (h // layer.size, w // layer.size, c), 0, 0
    if isinstance(layer, BatchNorm):
        channels = shape[-1]
        return shape, 2 * channels, 2 * channels
    if isinstance(layer, Flatten):
        size = 1
        for d in shape:
            size *= d
        return (size,), 0, 0
    if isinstance(layer, GlobalAvgPool):
        _need_image(shape, where)
        return (shape[-1],), 0, 0
    if isinstance(layer, Dense):
        if len(shape) != 1:
            raise LabError(f"{where}: a dense layer needs flat input; add Flatten before it.")
        if layer.units < 1:
            raise LabError(f"{where}: a dense layer needs at least 1 unit, got {layer.units}.")
        return (layer.units,), shape[0] * layer.units + layer.units, 0
    if isinstance(layer, Dropout):
        if not 0 <= layer.rate < 1:
            raise LabError(f"{where}: dropout rate must be in [0, 1), got {layer.rate}.")
        return shape, 0, 0
    if isinstance(layer, ReLU):
        return shape, 0, 0
    raise TypeError(f"unknown layer spec {layer!r}")


def _need_image(shape: tuple, where: str) -> None:
    if len(shape) != 3:
        raise LabError(f"{where}: needs an image-shaped input, but the input is already flat.")


def _conv_step(layer: Conv, shape: tuple, where: str) -> tuple[tuple, int, int]:
    _need_image(shape, where)
    h, w, c = shape
    if layer.padding not in PADDINGS:
        raise LabError(f"{where}: padding must be 'valid' or 'same', got {layer.padding!r}.")
    if layer.stride < 1:
        raise LabError(f"{where}: stride must be at least 1, got {layer.stride}.")
    if layer.kernel < 1:
        raise LabError(f"{where}: kernel size must be at least 1, got {layer.kernel}.")
    if layer.filters < 1:
        raise LabError(f"{where}: a convolution needs at least 1 filter, got {layer.filters}.")
    if layer.padding == "valid" and layer.kernel > min(h, w):
        raise LabError(f"{where}: a {layer.kernel}x{layer.kernel} kernel is larger than the {h}x{w} input "
                       "with 'valid' padding; use a smaller --kernel-size or --padding same.")
    oh, ow = (conv_output_size(s, layer.kernel, layer.stride, layer.padding) for s in (h, w))
    params = layer.kernel * layer.kernel * c * layer.filters + layer.filters
    return (oh, ow, layer.filters), params, 0


def forward_flops(layers: list[Layer], input_shape: tuple[int, int, int]) -> int:
    """Forward FLOPs of one image: 2 per multiply-add of the convolutions and dense layers.

    The definition of torch.utils.flop_counter.FlopCounterMode, which counts only matrix products and
    convolutions: biases, pooling, activations, batch norm, dropout and the input's normalisation are not
    counted. Raises LabError for shapes that cannot work, as `infer` does.
    """
    shapes, _ = infer(layers, input_shape)
    total = 0
    for layer, before, after in zip(layers, [tuple(input_shape), *shapes[:-1]], shapes):
        if isinstance(layer, Conv):
            oh, ow, filters = after
            total += 2 * oh * ow * filters * layer.kernel * layer.kernel * before[-1]
        elif isinstance(layer, Dense):
            total += 2 * before[0] * layer.units
    return total
