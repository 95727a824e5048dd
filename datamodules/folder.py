"""Any ImageFolder tree, on disk or in a tar: safe archive reading, parallel decoding, a cached .npz.

Layouts: root/train/<class>/*.png with an optional root/test/<class>/..., or a single root/<class>/... tree
(make_splits then cuts a test part). Single wrapping folders, as tarballs often have, are looked through.

Every image becomes one mode: grayscale (L) when every image of the tree is grayscale, else RGB (a gray image
is repeated on three channels, RGBA and palette images lose their transparency, as Keras' decoding does).
Given a size, each image is resized as it is decoded (datamodules.resize); without one, all must share a size.

An archive is read in one streaming pass and its images are decoded from memory, never extracted: the
decoded .npz cache (keyed by the archive's path, size and mtime) is what makes the second load instant,
and writing tens of thousands of small files would cost more than all the decoding.
"""
from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import re
import tarfile
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from core.errors import LabError
from datamodules.base import ImageSet, RawDataset
from datamodules.resize import resize_image, resize_to

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
CACHE_FORMAT = 1  # bump when the decoded arrays change meaning, so old caches are ignored
CHUNK = 1000  # images per worker task

Item = tuple[str, "bytes | None"]  # (name for messages and for reading from disk, bytes when in memory)


def load_folder(path: str | Path, cache_dir: Path, workers: int | None = None, size: int | None = None,
                policy: str = "stretch") -> RawDataset:
    """Load an image folder tree or a tar of one, each image resized to size x size under `policy` (see
    datamodules.resize) when a size is given; the decoded arrays are cached in `cache_dir`, per size and policy."""
    path = Path(path).expanduser()
    shape = Shape(size, policy)
    if not path.exists():
        raise LabError(f"Image folder {path} does not exist; pass --data-dir pointing at an image folder tree "
                       "or a .tar/.tar.gz of one.")
    if path.is_dir():
        source = DiskTree(path)
        train, test = find_splits(source)
        npz = cache_dir / f"dir-{_manifest_hash(path, train, test, shape)}.npz"
    else:
        npz = cache_dir / f"{_archive_key(path, shape)}.npz"
        cached = _read_cache(npz, str(path))
        if cached is not None:
            return cached
        source = ArchiveTree(path)
        train, test = find_splits(source)
    return _cached_or_decoded(npz, source, train, test, str(path), workers, shape)


@dataclass(frozen=True)
class Shape:
    """The side every image is resized to (None: kept as decoded, then all must match) and how."""

    size: int | None = None
    policy: str = "stretch"

    @property
    def tag(self) -> str:
        """Its part of a cache name: empty for images kept as they are."""
        return "" if self.size is None else f"-{self.size}px-{self.policy}"


# --- the two kinds of tree ------------------------------------------------------------------------------


class DiskTree:
    """A folder tree on disk, listed lazily."""

    def __init__(self, root: Path):
        self.root = root

    def entries(self, rel: str) -> tuple[list[str], list[str]]:
        """Sorted visible (subfolders, files) of `rel`."""
        try:
            found = [e for e in os.scandir(self.root / rel) if not e.name.startswith(".")]
        except OSError as exc:
            raise LabError(f"Cannot list folder {self.describe(rel)} ({exc.strerror}); "
                           "check that it exists and is readable.") from exc
        return sorted(e.name for e in found if e.is_dir()), sorted(e.name for e in found if e.is_file())

    def describe(self, rel: str) -> str:
        return str(self.root / rel) if rel else str(self.root)

    def item(self, rel: str) -> Item:
        return str(self.root / rel), None


class ArchiveTree:
    """A tar archive read into memory in one pass, refusing any member that could escape or is not data."""

    def __init__(self, tar_path: Path):
        self.tar_path = tar_path
        self.folders: dict[str, tuple[set[str], set[str]]] = {"": (set(), set())}
        self.blobs: dict[str, bytes] = {}
        self._read()

    def _read(self) -> None:
        if not tarfile.is_tarfile(self.tar_path):
            raise LabError(f"{self.tar_path} is a file but not a tar archive; pass an image folder tree "
                           "or a .tar/.tar.gz/.tgz of one as --data-dir.")
        try:
            with tarfile.open(self.tar_path, "r|*") as tar:  # stream mode: one sequential pass, no gzip seeks
                for member in tar:
                    rel = safe_member_path(member, self.tar_path)
                    if rel is not None:
                        self._add(rel, member.isdir())
                        if member.isfile() and rel.lower().endswith(IMAGE_SUFFIXES):
                            self.blobs[rel] = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise LabError(f"Archive {self.tar_path} is truncated or corrupt ({exc}); "
                           "replace it with a complete copy.") from exc

    def _add(self, rel: str, is_dir: bool) -> None:
        parent, _, name = rel.rpartition("/")
        if parent not in self.folders:
            self._add(parent, True)
        self.folders[parent][0 if is_dir else 1].add(name)
        if is_dir:
            self.folders.setdefault(rel, (set(), set()))

    def entries(self, rel: str) -> tuple[list[str], list[str]]:
        subfolders, files = self.folders.get(rel, (set(), set()))
        return sorted(n for n in subfolders if not n.startswith(".")), sorted(n for n in files if not n.startswith("."))

    def describe(self, rel: str) -> str:
        return f"{self.tar_path}:{rel}" if rel else str(self.tar_path)

    def item(self, rel: str) -> Item:
        return self.describe(rel), self.blobs[rel]


def safe_member_path(member: tarfile.TarInfo, tar_path: Path) -> str | None:
    """The member's relative path, None for the archive root, LabError for unsafe or non-data members."""
    parts = [p for p in member.name.split("/") if p not in ("", ".")]
    if member.name.startswith("/") or ".." in parts:
        raise LabError(f"Archive {tar_path} contains member {member.name!r} whose path points outside the "
                       "archive's folder, so it was refused; rebuild the archive with relative paths only.")
    if not (member.isfile() or member.isdir()):
        raise LabError(f"Archive {tar_path} contains {member.name!r}, a link or special file, which is refused; "
                       "rebuild the archive with regular files and folders only.")
    return "/".join(parts) or None


# --- layout ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """One split's images (relative paths in sorted class / file order) and their labels."""

    where: str
    classes: tuple[str, ...]
    files: list[str]
    labels: np.ndarray


def find_splits(tree: DiskTree | ArchiveTree) -> tuple[Split, Split | None]:
    """The train split and the optional test split of `tree`, with the same class names."""
    root = _unwrap(tree)
    subfolders, _ = tree.entries(root)
    if "train" not in subfolders:
        return list_split(tree, root), None
    train = list_split(tree, _join(root, "train"))
    if "test" not in subfolders:
        return train, None
    test = list_split(tree, _join(root, "test"))
    if test.classes != train.classes:
        missing = sorted(set(train.classes) - set(test.classes))
        extra = sorted(set(test.classes) - set(train.classes))
        raise LabError(f"Test folder {test.where} lacks classes {missing} and has extra classes {extra} "
                       f"compared with {train.where}; give train and test the same class subfolders.")
    return train, test


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _unwrap(tree: DiskTree | ArchiveTree) -> str:
    """Descend through single wrapping folders (e.g. a tarball's top folder) to the tree itself."""
    rel = ""
    while True:
        subfolders, files = tree.entries(rel)
        if "train" in subfolders or len(subfolders) != 1 or any(f.lower().endswith(IMAGE_SUFFIXES) for f in files):
            return rel
        inner = _join(rel, subfolders[0])
        if not tree.entries(inner)[0]:
            return rel  # a lone class folder of images, not a wrapper
        rel = inner


def list_split(tree: DiskTree | ArchiveTree, rel: str) -> Split:
    """The images of `rel`/<class>/, classes sorted by name; LabError for a tree that cannot train."""
    classes = tuple(tree.entries(rel)[0])
    if len(classes) < 2:
        raise LabError(f"Image folder {tree.describe(rel)} has {len(classes)} class subfolder(s) but needs at "
                       f"least two; arrange the images as {tree.describe(rel)}/<class>/<image>.png.")
    files, labels = [], []
    for label, name in enumerate(classes):
        folder = _join(rel, name)
        images = [_join(folder, f) for f in tree.entries(folder)[1] if f.lower().endswith(IMAGE_SUFFIXES)]
        if not images:
            raise LabError(f"Class folder {tree.describe(folder)} holds no .png/.jpg/.jpeg/.bmp images; "
                           "add images to it or remove it.")
        files += images
        labels += [label] * len(images)
    return Split(tree.describe(rel), classes, files, np.asarray(labels, dtype=np.int64))


# --- decoding -------------------------------------------------------------------------------------------


def _cached_or_decoded(npz: Path, tree: DiskTree | ArchiveTree, train: Split, test: Split | None,
                       source: str, workers: int | None, shape: Shape) -> RawDataset:
    cached = _read_cache(npz, source)
    if cached is not None:
        return cached
    files = train.files + (test.files if test else [])
    images = decode_images([tree.item(f) for f in files], workers, shape)
    n = len(train.files)
    raw = RawDataset(
        name="folder",
        train=ImageSet(images[:n], train.labels),
        test=ImageSet(images[n:], test.labels) if test else None,
        class_names=train.classes,
        source=source,
    )
    _write_cache(npz, raw)
    return raw


def decode_images(items: list[Item], workers: int | None = None, shape: Shape = Shape()) -> np.ndarray:
    """Decode all images (in worker processes when many) into N x H x W x C uint8: C=1 if all are gray, else 3;
    H = W = shape.size when it is given."""
    chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
    workers = min(workers or _cpus(), len(chunks))
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        # fork, not spawn: workers need only PIL and numpy, and spawn would re-import the caller's main module.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        try:
            parts = list(pool.map(partial(_decode_chunk, shape=shape), chunks))
        finally:
            pool.shutdown(cancel_futures=True)  # after a bad image, do not decode the rest
    else:
        parts = [_decode_chunk(chunk, shape) for chunk in chunks]
    return _stack([a for part in parts for a in part], [name for name, _ in items])


def _cpus() -> int:
    affinity = getattr(os, "sched_getaffinity", None)  # the CPUs this process may use, where known
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def _decode_chunk(items: list[Item], shape: Shape) -> list[np.ndarray]:
    return [_decode(name, data, shape) for name, data in items]


def _decode(name: str, data: bytes | None, shape: Shape) -> np.ndarray:
    """One image as H x W (grayscale) or H x W x 3 (anything else) uint8, at shape.size when given."""
    from PIL import Image  # lazy: keeps `import datamodules` light

    try:
        with Image.open(name if data is None else io.BytesIO(data)) as image:
            image = _one_mode(image)
            return np.asarray(image if shape.size is None else resize_image(image, shape.size, shape.policy))
    except Exception as exc:  # PIL raises many types for damaged files
        raise LabError(f"Image {name} cannot be decoded ({type(exc).__name__}: {exc}); "
                       "replace or delete the file.") from None


def read_image(path: str | Path, shape: tuple[int, int, int], policy: str) -> tuple[np.ndarray, tuple[int, int]]:
    """One image file as an H x W x C uint8 input of a network taking `shape` (H, W, C): grayscale for C = 1, else
    RGB, modes converted as a folder's are; resized under `policy` (datamodules.resize) when its size differs.
    Also its own (width, height). LabError naming the file when it cannot be decoded."""
    height, width, channels = shape
    try:
        from PIL import Image  # lazy: keeps `import datamodules` light

        with Image.open(path) as image:
            own = image.size
            image = _one_mode(image).convert("L" if channels == 1 else "RGB")
            array = np.asarray(resize_to(image, (width, height), policy))
    except Exception as exc:  # PIL raises many types for damaged files
        raise LabError(f"Image {path} cannot be decoded ({type(exc).__name__}: {exc}); "
                       "replace or delete the file.") from None
    return array.reshape(height, width, channels), own


def _one_mode(image):
    """L for grayscale, else RGB; a palette image through RGBA, so that PIL reads its transparency first."""
    if image.mode in GRAY_MODES:
        return image if image.mode == "L" else image.convert("L")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def _stack(arrays: list[np.ndarray], names: list[str]) -> np.ndarray:
    height, width = arrays[0].shape[:2]
    for array, name in zip(arrays, names):
        if array.shape[:2] != (height, width):
            h, w = array.shape[:2]
            raise LabError(f"Image {name} is {w}x{h} pixels but {names[0]} is {width}x{height}; pass "
                           "--image-size N to resize every image to N x N pixels at load (--resize stretch or crop).")
    channels = 1 if all(a.ndim == 2 for a in arrays) else 3
    out = np.empty((len(arrays), height, width, channels), dtype=np.uint8)
    for i, array in enumerate(arrays):
        out[i] = array[..., None] if array.ndim == 2 else array  # a gray image in an RGB set is repeated
    return out


# --- the .npz cache -------------------------------------------------------------------------------------


def _archive_key(tar_path: Path, shape: Shape) -> str:
    """Cache name for one archive: its name, size, mtime, a hash of where it lies, and the image shape asked."""
    stat = tar_path.stat()
    stem = re.sub(r"(\.tar(\.\w+)?|\.tgz)$", "", tar_path.name)
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", stem)
    where = hashlib.sha1(str(tar_path.resolve()).encode()).hexdigest()[:8]
    return f"{stem}-{stat.st_size}-{stat.st_mtime_ns}-{where}-v{CACHE_FORMAT}{shape.tag}"


def _manifest_hash(root: Path, train: Split, test: Split | None, shape: Shape) -> str:
    """Cache name for a folder tree: its path, every image's name, size and mtime, and the image shape asked."""
    digest = hashlib.sha1(f"{root.resolve()}|v{CACHE_FORMAT}{shape.tag}".encode())
    for split in (train, test):
        if split is not None:
            stamps = [(f, s.st_size, s.st_mtime_ns) for f in split.files for s in [os.stat(root / f)]]
            digest.update(repr((split.classes, stamps)).encode())
    return digest.hexdigest()[:16]


def _read_cache(npz: Path, source: str) -> RawDataset | None:
    """The dataset stored in `npz`, or None when it is absent or unreadable (then it is rebuilt)."""
    if not npz.is_file():
        return None
    try:
        with np.load(npz, allow_pickle=False) as data:
            has_test = "test_images" in data.files
            return RawDataset(
                name="folder",
                train=ImageSet(data["train_images"], data["train_labels"]),
                test=ImageSet(data["test_images"], data["test_labels"]) if has_test else None,
                class_names=tuple(str(c) for c in data["class_names"]),
                source=source,
            )
    except Exception:  # a damaged cache is only a lost shortcut
        return None


def _write_cache(npz: Path, raw: RawDataset) -> None:
    """Write atomically (temp file + rename), so an interrupted write never leaves a half cache."""
    arrays = {"train_images": raw.train.images, "train_labels": raw.train.labels,
              "class_names": np.asarray(raw.class_names, dtype=str)}
    if raw.test is not None:
        arrays.update(test_images=raw.test.images, test_labels=raw.test.labels)
    try:
        npz.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=npz.parent, prefix=f".{npz.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, npz)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        warnings.warn(f"could not cache decoded images at {npz} ({exc}); the next load will decode again")
