"""MNIST and Fashion-MNIST: a strict reader for IDX files (gzip or raw) and the loader built on it."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from core.errors import LabError
from datamodules.base import ImageSet, RawDataset

IMAGES_MAGIC = 0x0803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x0801  # unsigned bytes, 1 dimension

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# The four files of a set, by the name the original sites use.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """The array stored in one IDX file, checked against the expected magic number and exact byte length."""
    path = Path(path)
    data = _read_maybe_gzip(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise LabError(f"IDX file {path} is truncated ({len(data)} bytes, shorter than its header); "
                       "replace it with a complete copy.")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise LabError(f"IDX file {path} has magic number 0x{found:04x} instead of 0x{magic:04x}, so it is "
                       "corrupt or not the expected images/labels file; replace it with a correct copy.")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise LabError(f"IDX file {path} holds {len(data)} bytes but its header {dims} needs {expected}, "
                       "so it is truncated or corrupt; replace it with a complete copy.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LabError(f"Cannot read IDX file {path} ({exc.strerror}); check that it exists and is readable.") from exc
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise LabError(f"Gzip file {path} is truncated or corrupt ({exc}); replace it with a complete copy.") from exc


def idx_file(folder: Path, stem: str) -> Path | None:
    """The file for `stem` in `folder`: gzipped or raw, with '-idx' or Kaggle's '.idx' spelling."""
    for name in (stem, stem.replace("-idx", ".idx")):
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


def has_idx_set(folder: Path) -> bool:
    """Whether `folder` holds all four files of an MNIST-style set."""
    return all(idx_file(folder, stem) is not None for stem in IDX_FILES.values())


def load_idx_set(name: str, folder: Path, class_names: tuple[str, ...]) -> RawDataset:
    """Read the four IDX files in `folder` into a RawDataset (N x 28 x 28 x 1 uint8, int64 labels)."""
    paths = {key: idx_file(folder, stem) for key, stem in IDX_FILES.items()}
    missing = [IDX_FILES[key] for key, path in paths.items() if path is None]
    if missing:
        raise LabError(f"Folder {folder} lacks {', '.join(missing)}; put all four IDX files of {name} there.")
    train = _image_set(paths["train_images"], paths["train_labels"], len(class_names))
    test = _image_set(paths["test_images"], paths["test_labels"], len(class_names))
    return RawDataset(name=name, train=train, test=test, class_names=class_names, source=str(folder))


def _image_set(images_path: Path, labels_path: Path, num_classes: int) -> ImageSet:
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(labels) != len(images):
        raise LabError(f"Label file {labels_path} has {len(labels)} labels but {images_path} has {len(images)} "
                       "images; use the label file that belongs to these images.")
    if len(labels) and labels.max() >= num_classes:
        raise LabError(f"Label file {labels_path} contains label {labels.max()} but the dataset has "
                       f"{num_classes} classes; use the right label file.")
    return ImageSet(images=images[..., None].copy(), labels=labels.astype(np.int64))
