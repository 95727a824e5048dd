"""Networks for transfer learning, split into backbone blocks and a head (see lab.specs.phases).

Zoo backbones come from torchvision.models with their classifier removed: uint8 images are resized
on the fly, in batches (unless they were resized to --image-size at load), and normalised as the
torchvision weights expect, inside the network. Project models are the usual lab.specs.models networks,
their blocks read from the spec.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torchvision
from pytorch_lightning.utilities import measure_flops
from torch import nn
from torch.nn import functional as F

from lab.specs.networks import describe, layers_from_plain
from lab.specs.phases import has_params, spec_blocks
from lab.specs.zoo import BACKBONES
from lightning_modules.components.network import build_network, spec_modules

if TYPE_CHECKING:
    from datamodules.base import DataSplits
    from lab.config.settings import ExperimentSettings

# The attribute holding each torchvision model's classifier, which the new head replaces.
ZOO_CLASSIFIER = {"resnet18": "fc", "mobilenet_v3_small": "classifier", "efficientnet_b0": "classifier"}


class ZooInput(nn.Module):
    """uint8 NHWC -> float NCHW at size x size (bilinear), grayscale repeated to RGB, normalised for the weights."""

    def __init__(self, size: int, mean, std):
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std


class BackboneNet(nn.Module):
    """prep -> torchvision backbone (pooled features) -> head; its state dict keys start backbone. and head."""

    def __init__(self, prep: nn.Module, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.prep, self.backbone, self.head = prep, backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.prep(x)))


@dataclass
class TransferParts:
    net: nn.Module
    blocks: list[list[nn.Module]]  # the backbone's blocks, from the input up
    head: nn.Module  # the layer holding the class weights
    zoo_name: str | None = None  # the torchvision model, for zoo backbones


def build_described(description: dict) -> nn.Module:
    """The network of a lab.specs.networks description: the spec's layers, or a zoo backbone (its weights
    random, torchvision's weights=None) under the spec's head."""
    layers = layers_from_plain(description["layers"])
    if "zoo" not in description:
        return build_network(layers, tuple(description["input_shape"]), description["mean"], description["std"])
    name = BACKBONES[description["zoo"]].torchvision
    model = torchvision.models.get_model(name, weights=None)
    classifier = ZOO_CLASSIFIER[name]
    features = next(m for m in getattr(model, classifier).modules() if isinstance(m, nn.Linear)).in_features
    setattr(model, classifier, nn.Identity())
    transforms = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    head = nn.Sequential(*spec_modules(layers, (features,)))
    return BackboneNet(ZooInput(description["image_size"], transforms.mean, transforms.std), model, head)


def zoo_flops(description: dict) -> int | None:
    """Forward FLOPs of one image through a zoo backbone's network, its head included, as Lightning's measure_flops
    (FlopCounterMode: lab.specs.architectures.forward_flops' definition) counts them on a copy built on the meta
    device, which computes nothing; None for a spec network, which forward_flops counts from its spec."""
    if "zoo" not in description:
        return None
    with torch.device("meta"):
        net = build_described(description).eval()
        images = torch.zeros((1, *description["input_shape"]), dtype=torch.uint8)
    with torch.no_grad():
        return measure_flops(net, lambda: net(images))


def build_transfer(settings: ExperimentSettings, splits: DataSplits) -> TransferParts:
    description = describe(settings, splits)
    return transfer_parts(build_described(description), description)


def transfer_parts(net: nn.Module, description: dict) -> TransferParts:
    """The blocks and head of a network built by build_described."""
    if "zoo" in description:
        name = BACKBONES[description["zoo"]].torchvision
        return TransferParts(net, zoo_blocks(name, net.backbone), net.head[-1], name)
    spec = layers_from_plain(description["layers"])
    weighted = [m for m in net if any(True for _ in m.parameters(recurse=False))]
    assert len(weighted) == sum(has_params(layer) for layer in spec)
    return TransferParts(net, [[weighted[i] for i in block] for block in spec_blocks(spec)], weighted[-1])


def zoo_blocks(name: str, model: nn.Module) -> list[list[nn.Module]]:
    """The blocks lab.specs.zoo counts: resnet's stem and stages, the others' feature stages."""
    if name == "resnet18":
        return [[model.conv1, model.bn1], [model.layer1], [model.layer2], [model.layer3], [model.layer4]]
    return [[stage] for stage in model.features]
