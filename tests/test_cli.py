"""Bad input: one sentence on stderr, exit code 2, no traceback, no run folder left behind.

The entry points run in this process, through their main(argv): a fresh interpreter per case would
import torch and TensorFlow again each time only to check an argument.
"""
from __future__ import annotations

import pytest

import core.frameworks
import train_keras
import train_lightning
from conftest import call_main
from lab.run import train_cli

SCRIPTS = {"train_lightning.py": train_lightning, "train_keras.py": train_keras}


@pytest.fixture(autouse=True)
def _keep_tensorflow(monkeypatch):
    """train_lightning.main declares its process TensorFlow-free (a stub module in sys.modules); this
    process also runs Keras, which needs the real TensorFlow."""
    monkeypatch.setattr(core.frameworks, "without_tensorflow", lambda: None)


def _benchmark(module_name: str):
    """A benchmark's command line: its main run as `python -m bench.<name>` runs it (bench.common.run_benchmark)."""
    import importlib

    from bench.common import run_benchmark

    module = importlib.import_module(f"bench.{module_name}")
    return lambda argv: run_benchmark(module.main, argv)


def _assert_one_line_error(code, err, message):
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err


@pytest.mark.parametrize("args, message", [
    (["--epochs", "two"], "invalid int value"),
    (["--optimizer", "rmsprop"], "invalid choice"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--kernel-size", "9"], "larger than the 8x8 input"),
    (["--stride", "0"], "stride must be at least 1"),
    (["--dataset", "imagenet"], "imagenet"),
    (["--dataset", "folder"], "--data-dir"),
    (["--config", "missing.yaml"], "does not exist"),
    (["--resume"], "no run of first_cnn-digits"),
    (["--gpus", "1"], "no usable GPU"),
    (["--accelerator", "cpu", "--devices", "2", "--batch-size", "33"], "does not divide over 2 devices"),
    (["--num-nodes", "2"], "--num-nodes"),  # Lightning: needs a launcher; Keras: trains on one machine
    (["--accelerator", "cpu", "--devices", "0,1"], "names GPU indices"),
    (["--test-weights", "first"], "invalid choice"),
    (["--progress", "bars"], "invalid choice"),
    (["--accelerator", "cpu", "--precision", "16-mixed"], "--precision 16-mixed needs a GPU"),
])
@pytest.mark.parametrize("script", list(SCRIPTS))
def test_bad_input(script, args, message, tmp_path, monkeypatch, capsys):
    if "--gpus" in args:
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    code, _, err = call_main(SCRIPTS[script].main, [*args, "--out", str(tmp_path / "runs")], capsys)
    _assert_one_line_error(code, err, message)
    assert not list((tmp_path / "runs").rglob("version_*"))


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_help_explains_every_flag(script, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, _ = call_main(SCRIPTS[script].main, ["--help"], capsys)
    assert code == 0
    for flag in ("--dataset", "--data-dir", "--model", "--epochs", "--batch-size", "--filters", "--kernel-size",
                 "--stride", "--padding", "--optimizer", "--lr", "--seed", "--out", "--name", "--config",
                 "--gpus", "--accelerator", "--devices", "--num-nodes", "--strategy", "--sync-batchnorm",
                 "--precision", "--resume", "--test-weights", "--progress", "--image-size", "--resize"):
        assert flag in out


@pytest.mark.parametrize("script, backend", [("train_lightning.py", "lightning"), ("train_keras.py", "keras")])
def test_entry_scripts_hand_their_flags_to_the_runner(script, backend, monkeypatch):
    calls = []
    monkeypatch.setattr(train_cli, "main", lambda name, argv=None: calls.append((name, argv)) or 7)
    tensorflow_free = []
    monkeypatch.setattr(core.frameworks, "without_tensorflow", lambda: tensorflow_free.append(True))
    assert SCRIPTS[script].main(["--epochs", "1"]) == 7
    assert calls == [(backend, ["--epochs", "1"])]
    assert tensorflow_free == ([True] if backend == "lightning" else [])  # Lightning's process never runs Keras


@pytest.mark.parametrize("module, args, message", [
    ("cifar_targets", ["run", "--data-dir", "no-such-dir.tar.gz", "--out", "runs"], "no-such-dir.tar.gz"),
    ("cifar_targets", ["run", "--epochs", "0", "--data-dir", "x", "--out", "runs"], "epochs must be at least 1"),
    ("cifar_targets", ["run", "--epochs", "two"], "invalid int value"),
    ("augment_cost", ["--data-dir", "no-such-dir.tar.gz"], "no-such-dir.tar.gz"),
    ("augment_cost", ["--backends", "kreas"], "--backends must list lightning and/or keras"),
    ("keras_placement", ["--data-dir", "no-such-dir.tar.gz"], "no-such-dir.tar.gz"),
    ("speed", ["--no-such-flag"], "unrecognized arguments"),
])
def test_benchmarks_refuse_bad_input_like_the_entry_scripts(module, args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = call_main(_benchmark(module), args, capsys)
    _assert_one_line_error(code, err, message)
    assert not (tmp_path / "runs").exists()


def _out_scripts() -> dict:
    """Every entry script with an --out, and the other arguments it needs to get as far as reading --out."""
    import augment_compare
    import compare
    import transfer_compare
    import tune_keras
    import tune_lightning
    from lab.pipeline import whole_lab

    return {"train_lightning.py": (train_lightning.main, []), "train_keras.py": (train_keras.main, []),
            "run_lab.py": (whole_lab.main, ["--mnist-dataset", "digits", "--sections", "1"]),
            "tune_keras.py": (tune_keras.main, []), "tune_lightning.py": (tune_lightning.main, []),
            "augment_compare.py": (augment_compare.main, ["--dataset", "digits", "--model", "first_cnn"]),
            "transfer_compare.py": (transfer_compare.main, ["--model", "cifar_cnn", "--weights", "runs/x"]),
            "compare.py": (compare.main, ["."])}


@pytest.mark.parametrize("where", ["a file", "under a file"])
@pytest.mark.parametrize("script", list(_out_scripts()))
def test_out_that_cannot_be_a_folder_is_refused_before_anything_runs(script, where, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    out = "notes.txt" if where == "a file" else "notes.txt/runs"
    main, args = _out_scripts()[script]
    code, _, err = call_main(main, [*args, "--out", out], capsys)
    _assert_one_line_error(code, err, "notes.txt")
    assert ("is a file, not a folder" if where == "a file" else "cannot be created because notes.txt is a file") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_out_in_a_folder_that_cannot_be_written_is_refused(tmp_path, monkeypatch):
    from core.errors import LabError
    from lab.config import settings

    settings.check_out(tmp_path / "new" / "runs")  # missing folders under a writable one are fine
    # The tests run as root, for whom every folder is writable: the refusal is shown with os.access saying no.
    monkeypatch.setattr(settings.os, "access", lambda path, mode: str(path) != str(tmp_path))
    with pytest.raises(LabError, match=rf"--out {tmp_path}/new/runs cannot be written: {tmp_path} is not writable"):
        settings.make_settings({"out": str(tmp_path / "new" / "runs")})
