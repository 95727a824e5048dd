"""Bad input: one sentence on stderr, exit code 2, no traceback, no run folder left behind."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cli(script, *args, cwd):
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


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
])
@pytest.mark.parametrize("script", ["train_lightning.py", "train_keras.py"])
def test_bad_input(script, args, message, tmp_path):
    if "--gpus" in args:
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    result = _cli(script, *args, "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert not list((tmp_path / "runs").rglob("version_*"))


def test_help_explains_every_flag(tmp_path):
    result = _cli("train_keras.py", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in ("--dataset", "--data-dir", "--model", "--epochs", "--batch-size", "--filters", "--kernel-size",
                 "--stride", "--padding", "--optimizer", "--lr", "--seed", "--out", "--name", "--config",
                 "--gpus", "--accelerator", "--devices", "--precision", "--resume"):
        assert flag in result.stdout


@pytest.mark.parametrize("script, args, message", [
    ("bench/cifar.py", ["run", "--data-dir", "no-such-dir.tar.gz", "--out", "runs"], "no-such-dir.tar.gz"),
    ("bench/cifar.py", ["run", "--epochs", "0", "--data-dir", "x", "--out", "runs"], "epochs must be at least 1"),
    ("bench/augment_cost.py", ["--data-dir", "no-such-dir.tar.gz"], "no-such-dir.tar.gz"),
    ("bench/augment_cost.py", ["--backends", "kreas"], "--backends must list lightning and/or keras"),
    ("bench/keras_placement.py", ["--data-dir", "no-such-dir.tar.gz"], "no-such-dir.tar.gz"),
])
def test_benchmarks_refuse_bad_input_like_the_entry_scripts(script, args, message, tmp_path):
    result = _cli(script, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
