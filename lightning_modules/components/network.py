"""Build a torch network from a layer spec, initialised as Keras initialises the same layers.

Images enter as uint8 N x H x W x C and are normalised inside the network, as on the Keras side.
Weights: Glorot-uniform kernels, zero biases. BatchNorm: Keras' epsilon and momentum.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lab.specs import architectures as A


class Normalize(nn.Module):
    """uint8 NHWC -> float NCHW, scaled to [0, 1] then standardised per channel."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).float() / 255.0
        return (x - self.mean) / self.std


class SamePad(nn.Module):
    """TensorFlow's 'same' padding, which puts the odd extra pixel after, for any stride."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = A.same_padding(x.shape[2], self.kernel, self.stride)
        left, right = A.same_padding(x.shape[3], self.kernel, self.stride)
        return F.pad(x, (left, right, top, bottom))


class ChannelsLastFlatten(nn.Module):
    """Flatten in Keras' H, W, C order, so a dense layer sees features in the same order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x.flatten(1)


def build_network(layers: list[A.Layer], input_shape: tuple[int, int, int], mean, std) -> nn.Sequential:
    return nn.Sequential(Normalize(mean, std), *spec_modules(layers, input_shape))


def spec_modules(layers: list[A.Layer], input_shape: tuple) -> list[nn.Module]:
    """The torch modules of a spec's layers, in order, Keras-initialised."""
    shapes, _ = A.infer(layers, input_shape)
    ins = [tuple(input_shape)] + shapes[:-1]
    modules: list[nn.Module] = []
    for layer, shape in zip(layers, ins):
        modules += _modules(layer, shape)
    for module in modules:
        module.apply(_keras_init)
    return modules


def _modules(layer: A.Layer, shape: tuple) -> list[nn.Module]:
    if isinstance(layer, A.Conv):
        conv = nn.Conv2d(shape[-1], layer.filters, layer.kernel, layer.stride)
        return [SamePad(layer.kernel, layer.stride), conv] if layer.padding == "same" else [conv]
    if isinstance(layer, A.Dense):
        return [nn.Linear(shape[0], layer.units)]
    if isinstance(layer, A.BatchNorm):
        norm = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d
        return [norm(shape[-1], eps=1e-3, momentum=0.01)]
    simple = {A.ReLU: lambda: nn.ReLU(), A.Flatten: lambda: ChannelsLastFlatten(),
              A.GlobalAvgPool: lambda: nn.AdaptiveAvgPool2d(1), A.MaxPool: lambda: nn.MaxPool2d(layer.size),
              A.Dropout: lambda: nn.Dropout(layer.rate)}
    modules = [simple[type(layer)]()]
    if isinstance(layer, A.GlobalAvgPool):
        modules.append(nn.Flatten())
    return modules


def _keras_init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


def count_params(net: nn.Module) -> A.ParamCount:
    """Keras' convention: BatchNorm running statistics are non-trainable parameters."""
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            frozen += module.running_mean.numel() + module.running_var.numel()
    return A.ParamCount(trainable, frozen)
