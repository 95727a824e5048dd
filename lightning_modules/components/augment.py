"""The PyTorch side of lab.specs.augmentation: whole uint8 N x H x W x C batches, on the device they are on.

torchvision.transforms.v2 draws one set of parameters per call, so on a batched tensor every image
would get the same flip, offset and angle; here every image gets its own (lab.specs.augmentation.draw),
applied with batched tensor operations: an indexing gather for flip and crop, one grid_sample for
the rotations, arithmetic for jitter and cutout. Images stay NHWC; only the rotation works in NCHW.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from datamodules.torch_data import Part
from lab.specs import augmentation as A

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings


class BatchAugment(nn.Module):
    """The ImageClassifier's `augment` slot: (uint8 images, global batch index, Part) -> augmented uint8 images.

    The draws are made for the whole global batch and each replica takes its slice, so an image's
    transformation does not depend on the number of devices."""

    def __init__(self, spec: A.AugmentSpec, seed: int):
        super().__init__()
        self.spec, self.seed = spec, seed

    def forward(self, images: torch.Tensor, step: int, part: Part | None = None) -> torch.Tensor:
        start, total = (0, len(images)) if part is None else part[:2]
        draws = A.draw(self.spec, total, self.seed, step, tuple(images.shape[1:3]))[start:start + len(images)]
        return apply(images, self.spec, _to_device(draws, images.device))


def build_augment(settings: ExperimentSettings) -> BatchAugment | None:
    spec = A.AugmentSpec.from_settings(settings)
    return BatchAugment(spec, settings.seed) if spec.active else None


def apply(images: torch.Tensor, spec: A.AugmentSpec, draws: torch.Tensor) -> torch.Tensor:
    """Augment uint8 N x H x W x C images with the draws (lab.specs.augmentation columns), on their device."""
    if spec.flip:
        images = torch.where(draws[:, A.FLIP].bool().view(-1, 1, 1, 1), images.flip(2), images)
    if spec.crop_pad:
        images = _crop(images, spec.crop_pad, draws[:, A.SHIFT].long())
    if spec.rotate or spec.color_jitter:
        x = images.float()
        x = _rotate(x, draws[:, A.AFFINE]) if spec.rotate else x
        x = _jitter(x, draws[:, A.JITTER]) if spec.color_jitter else x
        images = x.round_().clamp_(0, 255).to(torch.uint8)
    if spec.cutout:
        images = images.masked_fill(_square_mask(images.shape[1:3], draws[:, A.CUTOUT].long(), spec.cutout), 0)
    return images


def apply_numpy(images: np.ndarray, spec: A.AugmentSpec, draws: np.ndarray) -> np.ndarray:
    return apply(torch.from_numpy(images), spec, torch.from_numpy(draws)).numpy()


def _to_device(draws: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(draws)
    if device.type == "cpu":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)  # no wait for the GPU's queue


def _crop(images: torch.Tensor, pad: int, shift: torch.Tensor) -> torch.Tensor:
    """Zero-pad by `pad`, then crop H x W at offset pad + shift (per image) in one gather."""
    n, h, w, _ = images.shape
    padded = F.pad(images, (0, 0, pad, pad, pad, pad))
    rows = (shift[:, 0:1] + pad + torch.arange(h, device=images.device)).view(n, h, 1)
    cols = (shift[:, 1:2] + pad + torch.arange(w, device=images.device)).view(n, 1, w)
    return padded[torch.arange(n, device=images.device).view(n, 1, 1), rows, cols]


def _rotate(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Sample float N x H x W x C images through per-image inverse maps in pixel coordinates."""
    _, h, w, _ = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype),
                            torch.arange(w, device=x.device, dtype=x.dtype), indexing="ij")
    m = maps.to(x.dtype).view(-1, 6, 1, 1)
    src_x = m[:, 0] * xs + m[:, 1] * ys + m[:, 2]
    src_y = m[:, 3] * xs + m[:, 4] * ys + m[:, 5]
    # grid_sample's coordinates, align_corners=False: -1 and 1 are the outer edges of the border pixels
    grid = torch.stack([(2 * src_x + 1) / w - 1, (2 * src_y + 1) / h - 1], dim=-1)
    out = F.grid_sample(x.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.permute(0, 2, 3, 1)


def _jitter(x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    brightness, contrast = (factors[:, i].to(x.dtype).view(-1, 1, 1, 1) for i in (0, 1))
    x = x * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * contrast + mean


def _square_mask(size: torch.Size, corner: torch.Tensor, side: int) -> torch.Tensor:
    """True inside each image's square: N x H x W x 1."""
    h, w = size
    rows = torch.arange(h, device=corner.device).view(1, h) - corner[:, 0:1]
    cols = torch.arange(w, device=corner.device).view(1, w) - corner[:, 1:2]
    inside_rows = (rows >= 0) & (rows < side)
    inside_cols = (cols >= 0) & (cols < side)
    return (inside_rows[:, :, None] & inside_cols[:, None, :]).unsqueeze(-1)
