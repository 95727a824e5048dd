"""predict.py on a tiny finished run of each backend (digits): the run's own test probabilities again from PNG files,
images of any size, every bad input in one sentence; and checkpoints loaded in a fresh interpreter without the data.
"""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import core.frameworks
import predict as predict_script
from conftest import call_main, write_png
from lab.config.data import load_data
from lab.config.settings import make_settings
from lab.reports.metrics import softmax
from lab.run import train_cli

BACKENDS = ("lightning", "keras")
IMAGES = 12  # test images written as PNG files


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One finished digits run per backend: 1 epoch on 200 images."""
    out = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:  # this process runs Keras too: keep the real TensorFlow
        patch.setattr(core.frameworks, "without_tensorflow", lambda: None)
        for backend in BACKENDS:
            code = train_cli.main(backend, ["--dataset", "digits", "--epochs", "1", "--train-images", "200",
                                            "--out", str(out), "--progress", "none"])
            assert code == 0
    return {backend: out / "first_cnn-digits" / backend / "version_0" for backend in BACKENDS}


@pytest.fixture(scope="module")
def test_pngs(runs, tmp_path_factory) -> Path:
    """The runs' first IMAGES test images (the same split on both backends) as PNG files, 00.png ..."""
    folder = tmp_path_factory.mktemp("pngs")
    for i, image in enumerate(_test_images(runs["keras"])[:IMAGES]):
        write_png(folder / f"{i:02d}.png", image[..., 0])
    return folder


@pytest.fixture(autouse=True)
def _keep_tensorflow(monkeypatch):
    monkeypatch.setattr(core.frameworks, "without_tensorflow", lambda: None)


def _test_images(run_dir: Path) -> np.ndarray:
    return load_data(make_settings(json.loads((run_dir / "settings.json").read_text()))).test.images


def _run_probs(run_dir: Path) -> np.ndarray:
    with np.load(run_dir / "predictions.npz") as saved:
        return saved["probs"]


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _row_probs(row: dict, classes: int = 10) -> list[float]:
    """A CSV row of the top 10 as the probabilities of classes "0" .. "9"."""
    got = {row[f"top{i}"]: float(row[f"p_top{i}"]) for i in range(1, classes + 1)}
    return [got[str(c)] for c in range(classes)]


def _predict(capsys, *argv) -> tuple[int, str, str]:
    return call_main(predict_script.main, [str(a) for a in argv], capsys)


def _assert_one_sentence(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
    for fragment in fragments:
        assert fragment in err


@pytest.mark.parametrize("backend", BACKENDS)
def test_predict_gives_the_runs_own_test_probabilities(backend, runs, test_pngs, tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    code, stdout, err = _predict(capsys, runs[backend], test_pngs, "--top-k", "10", "--out", out)
    assert code == 0, err
    rows = _read_csv(out)
    expected = _run_probs(runs[backend])[:IMAGES]
    assert [Path(r["file"]).name for r in rows] == [f"{i:02d}.png" for i in range(IMAGES)]
    assert list(rows[0]) == ["file", *(c for i in range(1, 11) for c in (f"top{i}", f"p_top{i}"))]
    for row, probs in zip(rows, expected):
        np.testing.assert_allclose(_row_probs(row), probs, atol=1e-5)
        assert int(row["top1"]) == probs.argmax()
    assert "resized" in stdout and "->" not in stdout  # 8 x 8 already: none resized


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_photo_and_a_folder_of_mixed_sizes_are_resized_to_the_run_input(backend, runs, tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mixed"
    write_png(folder / "photo.png", rng.integers(0, 256, (4000, 3000, 3), dtype=np.uint8))
    for width, height in ((5, 7), (8, 8), (20, 12)):
        write_png(folder / "small" / f"{width}x{height}.png", rng.integers(0, 256, (height, width), dtype=np.uint8))
    out = tmp_path / "p.csv"
    code, stdout, err = _predict(capsys, runs[backend], folder, "--top-k", "2", "--out", out)
    assert code == 0, err
    assert len(_read_csv(out)) == 4
    assert "3000x4000 -> 8x8" in stdout and "20x12 -> 8x8" in stdout
    assert "8x8 -> 8x8" not in stdout


def test_read_image_resizes_as_the_training_data_does(tmp_path):
    """An RGB image on a grayscale run: PIL's luma, then datamodules.resize under the run's policy."""
    from PIL import Image

    from datamodules.folder import read_image
    from datamodules.resize import resize_array

    rgb = np.random.default_rng(1).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    write_png(tmp_path / "a.png", rgb)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))[None, ..., None]
    for policy in ("stretch", "crop"):
        image, size = read_image(tmp_path / "a.png", (8, 8, 1), policy)
        assert size == (20, 30)
        np.testing.assert_array_equal(image, resize_array(gray, 8, policy)[0])


def test_bad_images_are_named_and_skip_bad_goes_on(runs, test_pngs, tmp_path, capsys):
    folder = tmp_path / "some-bad"
    shutil.copytree(test_pngs, folder)
    (folder / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "p.csv"
    code, _, err = _predict(capsys, runs["lightning"], folder, "--out", out)
    _assert_one_sentence(code, err, "broken.png", "--skip-bad")
    assert not out.exists()
    code, _, err = _predict(capsys, runs["lightning"], folder, "--out", out, "--skip-bad")
    assert code == 0, err
    assert "skipped" in err and "broken.png" in err
    assert len(_read_csv(out)) == IMAGES


def test_bad_input_is_one_sentence_and_writes_nothing(runs, test_pngs, tmp_path, capsys):
    out = tmp_path / "p.csv"
    (tmp_path / "empty").mkdir()
    no_best = tmp_path / "no-best"
    shutil.copytree(runs["keras"], no_best)
    (no_best / "checkpoints" / "best.keras").unlink()
    cases = [
        ((tmp_path, test_pngs), "is not a finished run"),
        ((runs["keras"], tmp_path / "empty"), "holds no .png"),
        ((runs["keras"], tmp_path / "missing.png"), "does not exist"),
        ((no_best, test_pngs, "--checkpoint", "best"), "--checkpoint last"),
        ((runs["keras"], test_pngs, "--top-k", "0"), "--top-k"),
    ]
    for argv, message in cases:
        code, _, err = _predict(capsys, *argv, "--out", out)
        _assert_one_sentence(code, err, message)
        assert not out.exists()
    (tmp_path / "notes.txt").write_text("mine")
    for where, message in ((tmp_path / "empty", "is a folder"), (tmp_path / "notes.txt" / "p.csv", "is a file")):
        code, _, err = _predict(capsys, runs["keras"], test_pngs, "--out", where)
        _assert_one_sentence(code, err, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "no-best", "notes.txt"]
    assert not any((tmp_path / "empty").iterdir())


def _old_lightning_run(run_dir: Path, where: Path) -> Path:
    """A copy of the run whose checkpoints look like those written before they held their network."""
    shutil.copytree(run_dir, where)
    for path in (where / "checkpoints").glob("*.ckpt"):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        saved["hyper_parameters"] = {"num_classes": 10, "optimizer": "adam", "lr": 1e-3}
        torch.save(saved, path)
    return where


def test_an_old_lightning_checkpoint_is_rebuilt_from_the_runs_data(runs, test_pngs, tmp_path, capsys):
    old = _old_lightning_run(runs["lightning"], tmp_path / "old")
    out = tmp_path / "p.csv"
    code, _, err = _predict(capsys, old, test_pngs, "--out", out)
    assert code == 0, err
    expected = _run_probs(runs["lightning"])[:IMAGES]
    np.testing.assert_allclose([float(r["p_top1"]) for r in _read_csv(out)], expected.max(axis=1), atol=1e-5)
    settings = json.loads((old / "settings.json").read_text())
    (old / "settings.json").write_text(json.dumps({**settings, "filters": settings["filters"] // 2}))
    code, _, err = _predict(capsys, old, test_pngs, "--out", out)
    _assert_one_sentence(code, err, "does not fit the network its run's settings describe")
    (old / "settings.json").write_text(json.dumps({**settings, "dataset": "folder", "data_dir": "/nonexistent"}))
    code, _, err = _predict(capsys, old, test_pngs, "--out", out, "--data-dir", tmp_path / "absent")
    _assert_one_sentence(code, err, "before checkpoints held their network", "mean and std", "--data-dir")


LOAD = {
    "lightning": ("from lightning_modules.classifier import ImageClassifier\n"
                  "import torch\n"
                  "model = ImageClassifier.load_from_checkpoint(sys.argv[1], map_location='cpu').eval()\n"
                  "with torch.no_grad():\n"
                  "    logits = model(torch.from_numpy(images)).numpy()\n"),
    "keras": ("import keras_models\n"
              "import keras\n"
              "logits = keras.models.load_model(sys.argv[1]).predict(images, verbose=0)\n"),
}


def _assert_loads_without_the_data(backend: str, run_dir: Path, tmp_path: Path) -> None:
    """Plain load_from_checkpoint / load_model in a fresh interpreter, scikit-learn (the digits) made unimportable,
    give the run's own test probabilities."""
    np.save(tmp_path / "images.npy", _test_images(run_dir))
    code = ("import sys\n"
            "sys.modules['sklearn'] = None\n"
            "import numpy as np\n"
            "images = np.load(sys.argv[2])\n"
            f"{LOAD[backend]}"
            "np.save(sys.argv[3], logits)\n")
    checkpoint = next((run_dir / "checkpoints").glob("last*"))
    done = subprocess.run([sys.executable, "-c", code, checkpoint, tmp_path / "images.npy", tmp_path / "logits.npy"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(softmax(np.load(tmp_path / "logits.npy")), _run_probs(run_dir), atol=1e-5)


@pytest.mark.multiprocess
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_checkpoint_loads_in_a_fresh_interpreter_without_the_data(backend, runs, tmp_path):
    _assert_loads_without_the_data(backend, runs[backend], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["transfer", "zoo", "compiled"])
def test_transfer_zoo_and_compiled_runs_load_and_predict_alike(kind, backend, runs, test_pngs, tmp_path, capsys):
    """A run fine-tuned from the tiny run's checkpoint, a zoo backbone from scratch (resized in the network), and a
    run trained with --compile (torch.compile / XLA), whose checkpoint loads into the plain network."""
    flags = {"transfer": ["--weights", str(runs[backend])], "zoo": ["--model", "mobilenet", "--image-size", "32"],
             "compiled": ["--compile", "true"]}[kind]
    code = train_cli.main(backend, ["--dataset", "digits", "--epochs", "1", "--train-images", "200", "--out",
                                    str(tmp_path / "runs"), "--progress", "none", *flags])
    assert code == 0
    run_dir = next((tmp_path / "runs").glob(f"*/{backend}/version_0"))
    _assert_loads_without_the_data(backend, run_dir, tmp_path)
    out = tmp_path / "p.csv"
    code, _, err = _predict(capsys, run_dir, test_pngs, "--top-k", "10", "--out", out)
    assert code == 0, err
    for row, probs in zip(_read_csv(out), _run_probs(run_dir)):
        np.testing.assert_allclose(_row_probs(row), probs, atol=1e-5)
