"""Dataset names and `load_raw`: where each dataset is looked for, and the optional torchvision download."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from core.errors import LabError, one_line
from core.io import download_timeout
from datamodules import cifar, idx
from datamodules.base import RawDataset
from datamodules.digits import load_digits
from datamodules.folder import load_folder
from datamodules.resize import resize_raw

DATASETS = ("mnist", "fashion_mnist", "cifar10", "digits", "folder")
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist package

IDX_HINT = "the four IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...)"
CIFAR_HINT = f"{cifar.BATCHES_DIR}/ or {cifar.TARBALL}"


def cache_root() -> Path:
    """Where downloads and extracted/decoded caches go: $DUAL_LAB_CACHE, else ~/.cache/dual-lab."""
    if os.environ.get("DUAL_LAB_CACHE"):
        return Path(os.environ["DUAL_LAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dual-lab"


def load_raw(name: str, data_dir: str | Path | None = None, download: bool = True, image_size: int | None = None,
             resize: str = "stretch") -> RawDataset:
    """Load dataset `name` from `data_dir` (or the usual places), downloading it when allowed and needed; with
    `image_size`, every image at image_size x image_size pixels under the `resize` policy (datamodules.resize):
    a folder's as it is decoded (and so cached), the other datasets' after loading."""
    if name == "folder":
        if data_dir is None:
            raise LabError("--data-dir is required for --dataset folder; point it at root/<class>/*.png, "
                           "root/train/<class>/... (optionally with root/test/), or a .tar.gz of such a tree.")
        return load_folder(data_dir, cache_root() / "folders", size=image_size, policy=resize)
    return resize_raw(_load_fixed_size(name, data_dir, download), image_size, resize)


def _load_fixed_size(name: str, data_dir: str | Path | None, download: bool) -> RawDataset:
    root = Path(data_dir).expanduser() if data_dir is not None else None
    if name == "digits":
        return load_digits()
    if name == "cifar10":
        place = _find_or_download("CIFAR-10", "CIFAR10", root or cache_root(), cifar.cifar_places,
                                  cifar.holds_cifar, download, CIFAR_HINT)
        return cifar.load_cifar10(place)
    if name in ("mnist", "fashion_mnist"):
        fashion = name == "fashion_mnist"
        folder = _find_or_download("Fashion-MNIST" if fashion else "MNIST", "FashionMNIST" if fashion else "MNIST",
                                   root or cache_root(), _idx_places(fashion), idx.has_idx_set, download, IDX_HINT)
        return idx.load_idx_set(name, folder, idx.FASHION_CLASSES if fashion else idx.MNIST_CLASSES)
    raise LabError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASETS)}.")


def _idx_places(fashion: bool) -> Callable[[Path], list[Path]]:
    """The folders searched for IDX files: the root itself, torchvision's layout, Debian's package."""
    def places(root: Path) -> list[Path]:
        if fashion:
            return [root, root / "FashionMNIST" / "raw", FASHION_SYSTEM_DIR]
        return [root, root / "MNIST" / "raw"]
    return places


def _find_or_download(title: str, torchvision_class: str, root: Path, places: Callable[[Path], list[Path]],
                      found: Callable[[Path], bool], download: bool, hint: str) -> Path:
    """The first place holding the dataset; else download into `root` and look again; else LabError."""
    tried = places(root)
    for place in tried:
        if found(place):
            return place
    reason = "downloading was turned off"
    if download:
        try:
            _torchvision_download(torchvision_class, root)
        except Exception as exc:  # no network, no torchvision, a bad mirror...
            reason = f"downloading them failed ({type(exc).__name__}: {one_line(exc, line=-1)})"
        else:
            for place in places(root):
                if found(place):
                    return place
            reason = f"the download into {root} did not produce them"
    raise LabError(f"{title} files were not found in {', '.join(map(str, tried))} and {reason}; "
                   f"pass --data-dir DIR with {hint}, or use --dataset digits which needs no files.")


def _torchvision_download(class_name: str, root: Path) -> None:
    """Fetch the dataset with torchvision's downloader (imported only here: it pulls in torch)."""
    import torchvision

    with download_timeout():
        getattr(torchvision.datasets, class_name)(str(root), train=True, download=True)
