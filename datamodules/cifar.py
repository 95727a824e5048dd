"""CIFAR-10 from the official python batches, in a folder or straight from the release tarball."""
from __future__ import annotations

import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from core.errors import LabError
from datamodules.base import ImageSet, RawDataset

BATCHES_DIR = "cifar-10-batches-py"
TARBALL = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def cifar_places(root: Path) -> list[Path]:
    """Where a CIFAR-10 copy may lie under `root`: the batches folder, the folder itself, the tarball."""
    if root.is_file():
        return [root]
    return [root / BATCHES_DIR, root, root / TARBALL]


def holds_cifar(place: Path) -> bool:
    """Whether `place` is a batches folder or a file to read as the tarball (checked when read)."""
    return (place.is_dir() and (place / TEST_BATCH).is_file()) or place.is_file()


def load_cifar10(place: Path) -> RawDataset:
    """Read the five train batches, the test batch and the class names from a folder or tarball."""
    blobs = _tar_blobs(place) if place.is_file() else _dir_blobs(place)
    train = _concat([_batch(blobs, name, place) for name in TRAIN_BATCHES])
    test = _batch(blobs, TEST_BATCH, place)
    classes = _class_names(blobs)
    return RawDataset(name="cifar10", train=train, test=test, class_names=classes, source=str(place))


def _dir_blobs(folder: Path) -> dict[str, tuple[str, bytes]]:
    """Batch name -> (file name for errors, bytes) for the batch files present in `folder`."""
    blobs = {}
    for name in (*TRAIN_BATCHES, TEST_BATCH, META):
        path = folder / name
        if path.is_file():
            blobs[name] = (str(path), path.read_bytes())
    return blobs


def _tar_blobs(tar_path: Path) -> dict[str, tuple[str, bytes]]:
    """The same, read from the tarball's members without extracting (found by base name, any top folder)."""
    wanted = {*TRAIN_BATCHES, TEST_BATCH, META}
    blobs = {}
    try:
        with tarfile.open(tar_path, "r|*") as tar:  # stream mode: one sequential pass over the gzip
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted:
                    blobs[base] = (f"{tar_path}:{member.name}", tar.extractfile(member).read())
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise LabError(f"CIFAR-10 tarball {tar_path} is truncated or corrupt ({exc}); "
                       "download it again or pass the extracted cifar-10-batches-py folder.") from exc
    return blobs


def _unpickle(label: str, blob: bytes) -> dict:
    try:
        # Only ever read from the user's own data folder, as the official loader does.
        obj = pickle.loads(blob, encoding="bytes")
    except Exception as exc:  # a corrupt pickle can raise nearly anything
        raise LabError(f"CIFAR-10 file {label} is truncated or corrupt ({type(exc).__name__}); "
                       "replace it with a fresh copy of the official python batches.") from exc
    if not isinstance(obj, dict):
        raise LabError(f"CIFAR-10 file {label} does not hold a batch dictionary; "
                       "replace it with a fresh copy of the official python batches.")
    return obj


def _batch(blobs: dict[str, tuple[str, bytes]], name: str, place: Path) -> ImageSet:
    if name not in blobs:
        raise LabError(f"CIFAR-10 batch {name} is missing from {place}; "
                       f"supply the complete {BATCHES_DIR} folder or {TARBALL}.")
    label, blob = blobs[name]
    batch = _unpickle(label, blob)
    data, labels = batch.get(b"data"), batch.get(b"labels")
    try:
        data = np.asarray(data, dtype=np.uint8)
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        data = labels = None
    if data is None or labels is None or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),):
        raise LabError(f"CIFAR-10 file {label} lacks N x 3072 b'data' with N b'labels'; "
                       "replace it with a fresh copy of the official python batches.")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        raise LabError(f"CIFAR-10 file {label} has labels outside 0..9; "
                       "replace it with a fresh copy of the official python batches.")
    # Rows are channel-major (1024 red, 1024 green, 1024 blue); make them N x 32 x 32 x 3.
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return ImageSet(images=images, labels=labels)


def _concat(parts: list[ImageSet]) -> ImageSet:
    return ImageSet(images=np.concatenate([p.images for p in parts]),
                    labels=np.concatenate([p.labels for p in parts]))


def _class_names(blobs: dict[str, tuple[str, bytes]]) -> tuple[str, ...]:
    """The names in batches.meta; the official ones when the meta file is absent."""
    if META not in blobs:
        return CLASSES
    label, blob = blobs[META]
    names = _unpickle(label, blob).get(b"label_names")
    if not isinstance(names, list) or len(names) != len(CLASSES):
        raise LabError(f"CIFAR-10 file {label} lacks the 10 b'label_names'; "
                       "replace it with a fresh copy of the official python batches.")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
