"""Folders of real photos: mixed sizes and modes resized to --image-size at load, stretched or centre-cropped,
cached per size; the same images for both backends."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from test_datasets import SHARED_CIFAR, lab_error

from core.errors import LabError
from datamodules import folder, load_splits, registry
from datamodules.resize import resize_array
from lab.config.data import load_data, load_size
from lab.config.settings import make_settings


def _save(path: Path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def photo_tree(root: Path, per_class: int = 4) -> Path:
    """Two classes of images as a camera roll gives them: sizes from 9x7 to 31x40, modes L, RGB, RGBA and P."""
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(31, 17), (9, 7), (20, 40), (16, 16)]  # (width, height)
    modes = ["RGB", "L", "RGBA", "P"]
    for c, name in enumerate(("cat", "dog")):
        for i in range(per_class):
            width, height = sizes[(i + c) % len(sizes)]
            rgba = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
            image = Image.fromarray(rgba, "RGBA").convert(modes[(i + 2 * c) % len(modes)])
            _save(root / name / f"{i:02d}.png", image)
    return root


def test_a_tree_of_mixed_sizes_and_modes_loads_at_one_size_in_rgb(tmp_path, lab_cache):
    root = photo_tree(tmp_path / "photos")
    message = lab_error(registry.load_raw, "folder", root)
    assert "--image-size" in message and str(root) in message
    raw = registry.load_raw("folder", root, image_size=12)
    assert raw.train.images.shape == (8, 12, 12, 3) and raw.train.labels.tolist() == [0] * 4 + [1] * 4
    assert raw.train.images.std() > 30  # real pixels, not a blank fill
    crop = registry.load_raw("folder", root, image_size=12, resize="crop")
    assert crop.train.images.shape == (8, 12, 12, 3)
    square = 3  # cat/03.png is 16x16: crop and stretch agree on a square image
    np.testing.assert_array_equal(crop.train.images[square], raw.train.images[square])
    assert not np.array_equal(crop.train.images[0], raw.train.images[0])  # 31x17: they differ


def test_a_grayscale_tree_stays_one_channel_and_a_gray_image_among_colour_is_repeated(tmp_path, lab_cache):
    from PIL import Image

    for i, (w, h) in enumerate([(10, 8), (7, 12)]):
        for name in ("a", "b"):
            _save(tmp_path / "gray" / name / f"{i}.png", Image.new("L", (w, h), 40 * i + 20))
    raw = registry.load_raw("folder", tmp_path / "gray", image_size=6)
    assert raw.train.images.shape == (4, 6, 6, 1) and sorted(np.unique(raw.train.images)) == [20, 60]
    _save(tmp_path / "gray" / "b" / "9.png", Image.new("RGB", (5, 5), (200, 0, 0)))
    mixed = registry.load_raw("folder", tmp_path / "gray", image_size=6)
    assert mixed.train.images.shape == (5, 6, 6, 3)
    assert (mixed.train.images[0] == 20).all()  # the gray image on all three channels


def test_a_corrupt_image_still_gets_its_sentence(tmp_path, lab_cache):
    root = photo_tree(tmp_path / "photos")
    (root / "dog" / "01.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    message = lab_error(registry.load_raw, "folder", root, image_size=12)
    assert str(root / "dog" / "01.png") in message and "cannot be decoded" in message


def _bands(width: int, height: int, vertical: bool) -> np.ndarray:
    """Three equal bands, red, green and blue, along the long side."""
    image = np.zeros((height, width, 3), np.uint8)
    third = (width if vertical else height) // 3
    for channel in range(3):
        band = slice(channel * third, (channel + 1) * third)
        if vertical:
            image[:, band, channel] = 255
        else:
            image[band, :, channel] = 255
    return image


@pytest.mark.parametrize("vertical", [True, False])
def test_crop_keeps_the_centre_and_stretch_keeps_everything(vertical):
    wide = _bands(60, 20, vertical) if vertical else _bands(20, 60, vertical)
    crop = resize_array(wide[None], 10, "crop")[0]
    stretch = resize_array(wide[None], 10, "stretch")[0]
    along = (lambda a: a) if vertical else (lambda a: a.transpose(1, 0, 2))  # columns run along the long side
    crop, stretch = along(crop), along(stretch)
    assert crop.shape == stretch.shape == (10, 10, 3)
    assert (crop[:, 1:-1] == (0, 255, 0)).all()  # only the green centre (the edges blend in their neighbours)
    assert (crop[..., 1] > 200).all()
    assert (stretch[:, :2] == (255, 0, 0)).all() and (stretch[:, -2:] == (0, 0, 255)).all()
    assert (stretch[:, 4:6] == (0, 255, 0)).all()


def test_the_cache_is_kept_per_size_and_policy(tmp_path, lab_cache, monkeypatch):
    root = photo_tree(tmp_path / "photos")
    twelve = registry.load_raw("folder", root, image_size=12)
    assert registry.load_raw("folder", root, image_size=8).train.images.shape[1:3] == (8, 8)
    registry.load_raw("folder", root, image_size=12, resize="crop")
    assert len(list((lab_cache / "folders").glob("*.npz"))) == 3
    monkeypatch.setattr(folder, "decode_images", lambda *a, **k: pytest.fail("decoded again"))
    np.testing.assert_array_equal(registry.load_raw("folder", root, image_size=12).train.images, twelve.train.images)
    keys = {folder._archive_key(SHARED_CIFAR if SHARED_CIFAR.exists() else Path(__file__), folder.Shape(size, policy))
            for size, policy in [(None, "stretch"), (None, "crop"), (32, "stretch"), (48, "stretch"), (48, "crop")]}
    assert len(keys) == 4  # without a size the policy does not matter


def test_image_size_resizes_the_fixed_size_datasets_for_project_models_and_not_for_backbones():
    digits = load_data(make_settings({"dataset": "digits", "model": "cifar_cnn", "image_size": 16}))
    assert digits.input_shape == (16, 16, 1) and len(digits.train) == len(load_splits("digits").train)
    assert load_size(make_settings({"dataset": "digits", "model": "mobilenet", "image_size": 32})) is None
    assert load_size(make_settings({"dataset": "folder", "model": "mobilenet", "image_size": 32})) == 32
    assert load_size(make_settings({"dataset": "folder", "model": "mlp"})) is None
    with pytest.raises(LabError, match="at least 32 pixels for the zoo backbones"):
        make_settings({"dataset": "folder", "model": "mobilenet", "image_size": 16})
    with pytest.raises(LabError, match="at least 1 pixel"):
        make_settings({"model": "cifar_cnn", "image_size": 0})
    with pytest.raises(LabError, match="resize must be one of stretch, crop"):
        make_settings({"resize": "pad"})


def test_a_backbone_on_images_resized_at_load_resizes_no_more():
    from datamodules.base import DataSplits, ImageSet
    from keras_models.components.backbones import build_transfer as keras_transfer
    from lightning_modules.components.backbones import build_transfer as lightning_transfer

    def splits(side):
        part = ImageSet(np.zeros((2, side, side, 3), np.uint8), np.arange(2))
        return DataSplits("fake", part, part, part, ("a", "b"), "memory", (0.5,) * 3, (0.25,) * 3)

    settings = make_settings({"dataset": "folder", "model": "mobilenet", "image_size": 32})
    names = {side: [layer.name for layer in keras_transfer(settings, splits(side), None).net.layers]
             for side in (32, 40)}
    assert "resize" not in names[32] and "resize" in names[40]
    import torch

    net = lightning_transfer(settings, splits(32)).net.eval()
    seen = []
    net.backbone.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        net(torch.zeros((1, 40, 40, 3), dtype=torch.uint8))
        net(torch.zeros((1, 32, 32, 3), dtype=torch.uint8))
    assert seen == [(1, 3, 32, 32), (1, 3, 32, 32)]


@pytest.mark.parametrize("backend", ["lightning", "keras"])
def test_both_backends_train_on_a_photo_folder_at_the_size_asked(backend, tmp_path, lab_cache):
    from lab.records.results import load_results
    from lab.run.runner import run_settings
    from lab.specs.architectures import infer
    from lab.specs.models import model_spec

    root = photo_tree(tmp_path / "photos", per_class=10)
    settings = make_settings({"dataset": "folder", "data_dir": str(root), "image_size": 12, "resize": "crop",
                              "model": "first_cnn", "filters": 4, "epochs": 1, "batch_size": 4, "val_fraction": 0.2,
                              "out": str(tmp_path / "runs")})
    run_dir = run_settings(backend, settings)
    results = load_results(run_dir)
    _, expected = infer(model_spec(settings, (12, 12, 3), 2), (12, 12, 3))
    assert results["params"]["total"] == expected.total  # the network saw 12 x 12 RGB images
    assert results["hyperparameters"]["image_size"] == 12 and results["hyperparameters"]["resize"] == "crop"
    assert sum(results["split_sizes"].values()) == 20
    assert "seen at 12x12 pixels (--resize crop)" in (run_dir / "report.md").read_text()


def test_run_lab_passes_the_image_size_to_sections_2_to_4(tmp_path, lab_cache):
    from lab.pipeline import whole_lab
    from lab.pipeline.jobs import build_jobs, run_settings

    root = photo_tree(tmp_path / "photos", per_class=6)
    argv = ["--sections", "2,3", "--cifar-dataset", "folder", "--cifar-data-dir", str(root), "--backends", "keras",
            "--out", str(tmp_path / "lab")]
    assert whole_lab.main([*argv, "--plan", str(tmp_path / "plan.json")]) == 2  # mixed sizes: refused before any run
    lab, _ = whole_lab.make_lab(whole_lab.build_parser().parse_args(argv + ["--image-size", "12", "--resize", "crop"]))
    seen = [run_settings(lab, job) for job in build_jobs(lab)]  # section 2 and its next seed, section 3
    assert len(seen) == 3 and {(s.dataset, s.image_size, s.resize) for s in seen} == {("folder", 12, "crop")}


@pytest.mark.slow
def test_shared_cifar_jpegs_resized_to_48(lab_cache):
    if not SHARED_CIFAR.is_file():
        pytest.skip(f"{SHARED_CIFAR} is absent")
    start = time.perf_counter()
    raw = registry.load_raw("folder", SHARED_CIFAR, image_size=48)
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = registry.load_raw("folder", SHARED_CIFAR, image_size=48)
    cached = time.perf_counter() - start
    print(f"CIFAR-10 JPEG tarball resized to 48: first load {first:.1f}s, cached {cached:.2f}s")
    assert raw.train.images.shape == (50000, 48, 48, 3) and raw.test.images.shape == (10000, 48, 48, 3)
    assert cached < first
    np.testing.assert_array_equal(raw.test.images[:100], again.test.images[:100])
    original = registry.load_raw("folder", SHARED_CIFAR)  # 32 x 32: its own cache, untouched by the resize
    assert original.train.images.shape[1:] == (32, 32, 3)
    np.testing.assert_array_equal(resize_array(original.test.images[:100], 48, "stretch"), raw.test.images[:100])


def test_a_run_saved_before_resize_existed_is_still_reused(tmp_path):
    import json

    from lab.run.reuse import find_matching

    settings = make_settings({"out": str(tmp_path), "name": "old"})
    run_dir = tmp_path / "old" / "keras" / "version_0"
    run_dir.mkdir(parents=True)
    saved = {k: v for k, v in settings.to_dict().items() if k != "resize"}
    (run_dir / "settings.json").write_text(json.dumps(saved))
    assert find_matching(settings, "keras") == run_dir
    assert find_matching(make_settings({**settings.to_dict(), "resize": "crop"}), "keras") is None
