"""Training-time augmentation, defined once: what each setting means, and the random draws.

Both backends turn a uint8 N x H x W x C batch into an augmented uint8 batch of the same shape by
applying, in this order (each step only when its setting is on):

1. flip (--flip): each image is mirrored left-right with probability 0.5.
2. crop (--crop-pad N): the image is padded with N zero pixels on every side, then cropped back to
   H x W at a uniformly random integer offset in [0, 2N] x [0, 2N] (a shift of -N..N pixels).
3. rotation (--rotate DEG): rotated about the image centre by an angle uniform in [-DEG, DEG]
   degrees (positive: counter-clockwise on screen); bilinear interpolation, zeros outside.
4. colour jitter (--color-jitter S): brightness factor b and contrast factor c, each uniform in
   [1 - S, 1 + S]; y = b * x, then out = c * (y - mean(y)) + mean(y), the mean over the image's
   pixels and channels.
5. cutout (--cutout SIZE): one SIZE x SIZE square, its centre uniform over the pixels (so it may
   stick out of the image), is set to zero in every channel.

The result is rounded to the nearest integer and clipped to [0, 255]. The random draws of a batch
come from `draw(spec, n, seed, step)` (numpy, seeded by the run's seed and the global batch index),
so a batch's augmentation is reproducible, a resumed run continues the sequence, and both backends
apply the very same flips, shifts, angles, factors and squares to the same images. Only the
application (`apply` in components/augment.py of each backend) is
backend-specific. Validation and test images are never augmented.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.errors import LabError

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings

FLIP_PROBABILITY = 0.5

# Columns of the float32 array `draw` returns, one row per image.
FLIP = 0  # 1.0: mirror the image
SHIFT = slice(1, 3)  # crop offset minus the padding (dy, dx), integers in [-N, N]
AFFINE = slice(3, 9)  # inverse rotation map in pixel coordinates, see rotation_maps
JITTER = slice(9, 11)  # brightness factor, contrast factor
CUTOUT = slice(11, 13)  # top row and left column of the square (may be negative)
NUM_COLUMNS = 13


@dataclass(frozen=True)
class AugmentSpec:
    """A run's augmentation settings; the module docstring says what each one does."""

    flip: bool = False
    crop_pad: int = 0
    rotate: float = 0.0
    color_jitter: float = 0.0
    cutout: int = 0

    @classmethod
    def from_settings(cls, settings: ExperimentSettings) -> AugmentSpec:
        return cls(bool(settings.flip), int(settings.crop_pad), float(settings.rotate),
                   float(settings.color_jitter), int(settings.cutout))

    @property
    def active(self) -> bool:
        return any((self.flip, self.crop_pad, self.rotate, self.color_jitter, self.cutout))

    def describe(self) -> str:
        """The settings that are on, e.g. 'flip, crop-pad 4', or 'none'."""
        parts = ["flip"] if self.flip else []
        parts += [f"{name} {value:g}" for name, value in (("crop-pad", self.crop_pad), ("rotate", self.rotate),
                                                          ("color-jitter", self.color_jitter),
                                                          ("cutout", self.cutout)) if value]
        return ", ".join(parts) or "none"

    def check(self, input_shape: tuple[int, int, int]) -> None:
        """LabError when a setting cannot make sense for images of this (H, W, C) shape."""
        side = min(input_shape[:2])
        if self.crop_pad >= side:
            raise LabError(f"crop-pad {self.crop_pad} would shift the {side}-pixel images out of the frame; "
                           f"use a padding below {side} (e.g. 4 for 32x32 images).")
        if self.cutout > side:
            raise LabError(f"cutout {self.cutout} is larger than the {side}-pixel images; "
                           f"use a square of at most {side} pixels (e.g. 8 for 32x32 images).")


def check_settings(settings: ExperimentSettings, input_shape: tuple[int, int, int]) -> None:
    """Refuse augmentation settings that cannot work on these images, before any run folder exists."""
    AugmentSpec.from_settings(settings).check(input_shape)


def draw(spec: AugmentSpec, n: int, seed: int, step: int, size: tuple[int, int]) -> np.ndarray:
    """The random transformation of each of the n images of global batch `step`: n x NUM_COLUMNS float32.
    size is the images' (H, W). Under data parallelism each replica takes its rows of the global batch's draws."""
    rng = np.random.default_rng([seed, step, 0])  # the 0 keeps the draws of runs made by earlier versions
    out = np.zeros((n, NUM_COLUMNS), np.float32)
    out[:, JITTER] = 1.0
    if spec.flip:
        out[:, FLIP] = rng.random(n) < FLIP_PROBABILITY
    if spec.crop_pad:
        out[:, SHIFT] = rng.integers(-spec.crop_pad, spec.crop_pad, (n, 2), endpoint=True)
    angles = rng.uniform(-spec.rotate, spec.rotate, n) if spec.rotate else np.zeros(n)
    out[:, AFFINE] = rotation_maps(angles, *size)
    if spec.color_jitter:
        out[:, JITTER] = rng.uniform(1 - spec.color_jitter, 1 + spec.color_jitter, (n, 2))
    if spec.cutout:
        centres = rng.integers(0, size, (n, 2))
        out[:, CUTOUT] = centres - spec.cutout // 2
    return out


def rotation_maps(degrees: np.ndarray, height: int, width: int) -> np.ndarray:
    """n x 6 rows (a0, a1, a2, b0, b1, b2): output pixel (x, y) takes its value from the input at
    (a0 x + a1 y + a2, b0 x + b1 y + b2), x the column and y the row index, pixel centres at integers."""
    theta = np.deg2rad(degrees)
    cos, sin = np.cos(theta), np.sin(theta)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    # y points down, so this inverse map turns the picture counter-clockwise on screen for theta > 0
    return np.stack([cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy], axis=1)
