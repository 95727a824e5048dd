"""Dataset loaders and splits, on tiny files written by the tests (real data only in the slow tests)."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

import datamodules
from conftest import write_image_tree, write_png
from core.errors import LabError
from datamodules import folder, registry
from datamodules.base import ImageSet, RawDataset
from datamodules.idx import FASHION_CLASSES, IMAGES_MAGIC, LABELS_MAGIC, read_idx
from datamodules.splits import channel_stats, make_splits

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared/data/cifar10-jpg.tar.gz"


def lab_error(call, *args, **kwargs) -> str:
    """The message of the LabError `call` raises, checked to be one line."""
    with pytest.raises(LabError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.endswith(".")
    return message


# --- IDX (MNIST, Fashion-MNIST) -------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x0800 | array.ndim
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(array.astype(np.uint8))
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist(folder: Path, gz: bool, n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array, gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_read_back_exactly(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz)
    raw = registry.load_raw("mnist", tmp_path, download=False)
    assert raw.train.images.shape == (5, 28, 28, 1) and raw.train.images.dtype == np.uint8
    np.testing.assert_array_equal(raw.train.images[..., 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(raw.test.images[..., 0], arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(raw.train.labels, arrays["train-labels-idx1-ubyte"])
    assert raw.train.labels.dtype == np.int64
    assert raw.class_names == tuple("0123456789") and raw.source == str(tmp_path)


def test_torchvision_layout_is_found(tmp_path):
    write_mnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    raw = registry.load_raw("fashion_mnist", tmp_path, download=False)
    assert raw.source == str(tmp_path / "FashionMNIST" / "raw") and raw.class_names == FASHION_CLASSES


def test_truncated_idx_names_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28)), gz=False)
    path.write_bytes(path.read_bytes()[:-10])
    assert str(path) in lab_error(read_idx, path, IMAGES_MAGIC)


def test_truncated_gzip_names_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.ones((4, 28, 28)), gz=True)
    path.write_bytes(path.read_bytes()[:-20])
    assert str(path) in lab_error(read_idx, path, IMAGES_MAGIC)


def test_bad_magic_names_the_file(tmp_path):
    labels = write_idx(tmp_path / "labels", np.zeros(4), gz=False)
    message = lab_error(read_idx, labels, IMAGES_MAGIC)  # a labels file where images belong
    assert str(labels) in message and "magic" in message
    assert read_idx(labels, LABELS_MAGIC).shape == (4,)


def test_label_count_must_match(tmp_path):
    write_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2), gz=False)
    assert "t10k-labels-idx1-ubyte" in lab_error(registry.load_raw, "mnist", tmp_path, download=False)


def test_missing_mnist_without_download_names_places(tmp_path):
    message = lab_error(registry.load_raw, "mnist", tmp_path / "nothing", download=False)
    assert str(tmp_path / "nothing") in message and str(tmp_path / "nothing" / "MNIST" / "raw") in message
    assert "--data-dir" in message and "--dataset digits" in message


def test_failed_download_is_reported(tmp_path, lab_cache, monkeypatch):
    calls = []

    def offline(class_name, root):
        calls.append((class_name, root))
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\n<urlopen error no network>")

    monkeypatch.setattr(registry, "_torchvision_download", offline)
    message = lab_error(registry.load_raw, "mnist", None)
    assert calls == [("MNIST", lab_cache)]
    assert "urlopen error no network" in message and str(lab_cache) in message and "--dataset digits" in message


def test_download_then_found(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_torchvision_download",
                        lambda class_name, root: write_mnist(root / "MNIST" / "raw", gz=True))
    assert len(registry.load_raw("mnist", tmp_path).train) == 5


# --- CIFAR-10 -------------------------------------------------------------------------------------------


def cifar_batch(seed: int, n: int = 2) -> tuple[bytes, np.ndarray, list[int]]:
    """A pickled batch and the N x 32 x 32 x 3 images it encodes (rows are channel-major)."""
    images = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = [(seed + i) % 10 for i in range(n)]
    data = images.transpose(0, 3, 1, 2).reshape(n, 3072)
    return pickle.dumps({b"data": data, b"labels": labels, b"batch_label": b"x"}), images, labels


def write_cifar(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    train = []
    for i in range(1, 6):
        blob, images, _ = cifar_batch(i)
        (folder / f"data_batch_{i}").write_bytes(blob)
        train.append(images)
    blob, test, _ = cifar_batch(0)
    (folder / "test_batch").write_bytes(blob)
    names = [b"plane", b"car", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    return np.concatenate(train), test


def check_cifar(raw: RawDataset, train: np.ndarray, test: np.ndarray) -> None:
    np.testing.assert_array_equal(raw.train.images, train)
    np.testing.assert_array_equal(raw.test.images, test)
    assert raw.train.labels.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6] and raw.class_names[1] == "car"


def test_cifar_batches_folder(tmp_path):
    train, test = write_cifar(tmp_path / "cifar-10-batches-py")
    check_cifar(registry.load_raw("cifar10", tmp_path, download=False), train, test)


def test_cifar_tarball(tmp_path):
    train, test = write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    (tmp_path / "data").mkdir()
    with tarfile.open(tmp_path / "data" / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    raw = registry.load_raw("cifar10", tmp_path / "data", download=False)
    check_cifar(raw, train, test)
    assert raw.source == str(tmp_path / "data" / "cifar-10-python.tar.gz")


def test_corrupt_cifar_batch_names_the_file(tmp_path):
    write_cifar(tmp_path)
    batch = tmp_path / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    assert str(batch) in lab_error(registry.load_raw, "cifar10", tmp_path, download=False)


def test_missing_cifar_batch(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_5").unlink()
    assert "data_batch_5" in lab_error(registry.load_raw, "cifar10", tmp_path, download=False)


# --- image folders --------------------------------------------------------------------------------------


def test_folder_train_test(tiny_folder):
    raw = registry.load_raw("folder", tiny_folder)
    assert raw.class_names == ("cat", "dog") and raw.source == str(tiny_folder)
    assert raw.train.images.shape == (6, 5, 6, 3) and raw.test.images.shape == (4, 5, 6, 3)
    assert raw.train.labels.tolist() == [0, 0, 0, 1, 1, 1] and raw.test.labels.tolist() == [0, 0, 1, 1]
    expected = write_image_tree(tiny_folder / "copy", per_class=3, seed=1)
    np.testing.assert_array_equal(raw.train.images, np.stack(list(expected.values())))


def test_folder_single_tree_gray_is_split(tmp_path, lab_cache):
    write_image_tree(tmp_path / "tree", classes=("a", "b", "c"), per_class=5, gray=True)
    raw = registry.load_raw("folder", tmp_path / "tree")
    assert raw.test is None and raw.train.images.shape == (15, 5, 6, 1)
    splits = make_splits(raw, seed=0, val_fraction=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 3, 3)


def test_gray_among_rgb_becomes_rgb(tmp_path, lab_cache):
    write_image_tree(tmp_path / "tree")
    gray = np.full((5, 6), 77, np.uint8)
    write_png(tmp_path / "tree" / "dog" / "999.png", gray)
    raw = registry.load_raw("folder", tmp_path / "tree")
    assert raw.train.images.shape == (7, 5, 6, 3) and (raw.train.images[-1] == 77).all()


def make_tar(path: Path, source: Path, arcname: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname=arcname)
    return path


@pytest.mark.parametrize("arcname", [".", "wrapper"])
def test_folder_tarball_matches_folder(tiny_folder, tmp_path, arcname):
    tarball = make_tar(tmp_path / "tiny.tar.gz", tiny_folder, arcname)
    from_dir, from_tar = registry.load_raw("folder", tiny_folder), registry.load_raw("folder", tarball)
    np.testing.assert_array_equal(from_dir.train.images, from_tar.train.images)
    np.testing.assert_array_equal(from_dir.test.labels, from_tar.test.labels)
    assert from_tar.class_names == ("cat", "dog") and from_tar.source == str(tarball)


def test_second_tar_load_comes_from_cache(tiny_folder, tmp_path, lab_cache, monkeypatch):
    tarball = make_tar(tmp_path / "tiny.tgz", tiny_folder, "tiny")
    first = registry.load_raw("folder", tarball)
    monkeypatch.setattr(folder, "decode_images", lambda *a, **k: pytest.fail("decoded again"))
    second = registry.load_raw("folder", tarball)
    np.testing.assert_array_equal(first.train.images, second.train.images)
    assert second.test is not None and second.class_names == first.class_names
    assert [p.name for p in (lab_cache / "folders").iterdir() if p.name.startswith(".")] == []


def test_folder_cache_follows_changed_files(tiny_folder):
    registry.load_raw("folder", tiny_folder)
    write_png(tiny_folder / "train" / "cat" / "000.png", np.zeros((5, 6, 3), np.uint8))
    os.utime(tiny_folder / "train" / "cat" / "000.png", ns=(1, 1))  # a new mtime whatever the clock says
    assert registry.load_raw("folder", tiny_folder).train.images[0].max() == 0


def test_parallel_decoding_matches_serial(tiny_folder, monkeypatch):
    monkeypatch.setattr(folder, "CHUNK", 2)
    tree = folder.DiskTree(tiny_folder)
    items = [tree.item(f) for f in folder.find_splits(tree)[0].files]
    np.testing.assert_array_equal(folder.decode_images(items, workers=2), folder.decode_images(items, workers=1))
    Path(items[3][0]).write_bytes(b"garbage")
    assert items[3][0] in lab_error(folder.decode_images, items, workers=2)


def evil_tar(path: Path, name: str, kind: bytes = tarfile.REGTYPE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for good in ("tree/a/0.png", "tree/b/0.png"):
            buffer = io.BytesIO()
            from PIL import Image
            Image.fromarray(np.zeros((2, 2), np.uint8)).save(buffer, format="PNG")
            info = tarfile.TarInfo(good)
            info.size = len(buffer.getvalue())
            tar.addfile(info, io.BytesIO(buffer.getvalue()))
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
        else:
            info.size = 4
        tar.addfile(info, io.BytesIO(b"evil") if kind == tarfile.REGTYPE else None)
    return path


@pytest.mark.parametrize("name, kind", [("../evil", tarfile.REGTYPE), ("tree/../../evil", tarfile.REGTYPE),
                                        ("/tmp/dual-lab-evil", tarfile.REGTYPE), ("tree/a/link.png", tarfile.SYMTYPE)])
def test_unsafe_tar_members_are_refused(tmp_path, lab_cache, name, kind):
    tarball = evil_tar(tmp_path / "data" / "evil.tar.gz", name, kind)
    message = lab_error(registry.load_raw, "folder", tarball)
    assert str(tarball) in message and repr(name) in message
    assert not (tmp_path / "evil").exists() and not (tmp_path / "data" / "evil").exists()
    assert not Path("/tmp/dual-lab-evil").exists()
    assert not lab_cache.exists() or not any(lab_cache.rglob("*"))


def test_folder_errors_name_the_culprit(tmp_path, lab_cache):
    root = tmp_path / "tree"
    assert "does not exist" in lab_error(registry.load_raw, "folder", root)
    root.mkdir()
    assert str(root) in lab_error(registry.load_raw, "folder", root)  # no class folders
    write_image_tree(root)
    (root / "empty").mkdir()
    assert str(root / "empty") in lab_error(registry.load_raw, "folder", root)
    (root / "empty").rmdir()
    write_png(root / "dog" / "big.png", np.zeros((9, 7, 3), np.uint8))
    message = lab_error(registry.load_raw, "folder", root)
    assert str(root / "dog" / "big.png") in message and "7x9" in message and "6x5" in message
    (root / "dog" / "big.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert str(root / "dog" / "big.png") in lab_error(registry.load_raw, "folder", root)


def test_test_classes_must_match_train(tiny_folder):
    (tiny_folder / "test" / "dog").rename(tiny_folder / "test" / "wolf")
    message = lab_error(registry.load_raw, "folder", tiny_folder)
    assert "'dog'" in message and "'wolf'" in message


def test_folder_needs_data_dir():
    assert "--data-dir" in lab_error(registry.load_raw, "folder", None)


def test_not_a_tar(tmp_path, lab_cache):
    (tmp_path / "x.tar.gz").write_bytes(b"nope" * 200)
    assert str(tmp_path / "x.tar.gz") in lab_error(registry.load_raw, "folder", tmp_path / "x.tar.gz")


def test_unknown_dataset():
    assert "mnist" in lab_error(registry.load_raw, "imagenet")


# --- digits, splits, package --------------------------------------------------------------------------------


def test_digits():
    raw = registry.load_raw("digits")
    assert raw.train.images.shape == (1797, 8, 8, 1) and raw.test is None and len(raw.class_names) == 10
    assert raw.train.images.max() == 255 and set(raw.train.labels.tolist()) == set(range(10))


def indexed(n: int, with_test: bool = True) -> RawDataset:
    """A dataset whose image i stores i in its first two pixels, so splits can be traced back."""
    images = np.random.default_rng(0).integers(0, 256, (n, 4, 4, 3), dtype=np.uint8)
    images[:, 0, 0, 0], images[:, 0, 1, 0] = np.arange(n) // 256, np.arange(n) % 256
    test = ImageSet(images[:3], np.zeros(3, np.int64)) if with_test else None
    return RawDataset("toy", ImageSet(images, np.arange(n) % 3), test, ("a", "b", "c"), "memory")


def ids(images: ImageSet) -> np.ndarray:
    return images.images[:, 0, 0, 0].astype(int) * 256 + images.images[:, 0, 1, 0]


def test_same_seed_same_split_other_seed_other_split():
    raw = indexed(500)
    a, b, c = make_splits(raw, seed=3), make_splits(raw, seed=3), make_splits(raw, seed=4)
    np.testing.assert_array_equal(a.train.images, b.train.images)
    np.testing.assert_array_equal(a.val.labels, b.val.labels)
    assert a.mean == b.mean and not np.array_equal(ids(a.val), ids(c.val))


@pytest.mark.parametrize("with_test", [True, False])
def test_splits_are_disjoint_and_cover_train(with_test):
    raw = indexed(500, with_test)
    splits = make_splits(raw, seed=1, val_fraction=0.2)
    parts = [ids(splits.train), ids(splits.val)] + ([] if with_test else [ids(splits.test)])
    joined = np.concatenate(parts)
    assert len(joined) == len(set(joined.tolist())) == 500
    if with_test:
        assert (len(splits.val), len(splits.train), len(splits.test)) == (100, 400, 3)
    else:
        assert (len(splits.test), len(splits.val), len(splits.train)) == (100, 80, 320)
    assert (np.diff(ids(splits.train)) > 0).all()  # original order kept
    np.testing.assert_array_equal(splits.train.labels, ids(splits.train) % 3)


def test_mean_std_match_numpy():
    images = np.random.default_rng(5).integers(0, 256, (50, 7, 9, 3), dtype=np.uint8)
    mean, std = channel_stats(images)
    scaled = images / 255.0
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 1, 2)), rtol=1e-12)
    assert all(type(v) is float for v in mean + std)
    splits = make_splits(indexed(100), seed=0)
    assert splits.mean == channel_stats(splits.train.images)[0] and len(splits.std) == 3


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan"), "0.1"])
def test_bad_val_fraction(fraction):
    assert "between 0 and 1" in lab_error(make_splits, indexed(50), val_fraction=fraction)


def test_fraction_leaving_an_empty_split():
    assert "empty" in lab_error(make_splits, indexed(4), val_fraction=0.1)


def test_load_splits_on_digits():
    splits = datamodules.load_splits("digits", seed=0)
    assert splits.input_shape == (8, 8, 1) and splits.num_classes == 10
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797 and len(splits.test) == 359


def test_package_import_is_numpy_only():
    code = "import sys, datamodules; print(sorted({'torch','tensorflow','keras','sklearn','PIL'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- real data ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_fashion_mnist():
    if not registry.FASHION_SYSTEM_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    start = time.perf_counter()
    raw = registry.load_raw("fashion_mnist", download=False)
    print(f"Fashion-MNIST load: {time.perf_counter() - start:.2f}s from {raw.source}")
    assert (len(raw.train), len(raw.test), len(raw.class_names)) == (60000, 10000, 10)
    assert raw.train.images.shape[1:] == (28, 28, 1) and np.bincount(raw.test.labels).tolist() == [1000] * 10


@pytest.mark.slow
def test_shared_cifar_tarball(lab_cache):
    if not SHARED_CIFAR.is_file():
        pytest.skip(f"{SHARED_CIFAR} is absent")
    start = time.perf_counter()
    raw = registry.load_raw("folder", SHARED_CIFAR)
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = registry.load_raw("folder", SHARED_CIFAR)
    cached = time.perf_counter() - start
    print(f"CIFAR-10 JPEG tarball load: first {first:.1f}s, cached {cached:.2f}s")
    assert (len(raw.train), len(raw.test), len(raw.class_names)) == (50000, 10000, 10)
    assert raw.train.images.shape[1:] == (32, 32, 3) and cached < first
    np.testing.assert_array_equal(raw.test.images, again.test.images)
