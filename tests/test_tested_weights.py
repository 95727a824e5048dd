"""--test-weights best: the test set is scored with the best checkpoint, the one loaded back here and evaluated
apart; in a two-phase run, with the best epoch of the last phase.

A callback zeroes the network's weights just before one epoch's validation, so that the best epoch is known
not to be that one, whatever the numbers of this machine: the test cannot pass by testing the last weights.
"""
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from datamodules import load_splits
from lab.config.settings import make_settings
from lab.records.results import PREDICTIONS_FILE
from lab.run.backend import get_backend
from lab.run.reuse import find_matching
from lab.run.runner import finish
from lightning_modules import training as torch_training
from lightning_modules.components.backbones import build_transfer

pytest.importorskip("keras")
from core.frameworks import keras  # noqa: E402
from keras_models import training as keras_training  # noqa: E402

BACKENDS = ["lightning", "keras"]
TRAINERS = {"lightning": torch_training, "keras": keras_training}
BASE = {"dataset": "digits", "model": "first_cnn", "filters": 8, "train_images": 400, "seed": 0,
        "test_weights": "best"}


class _ZeroLightning(pl.Callback):
    """Zeroes every parameter before the validation of `epoch` (1-based)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_validation_start(self, trainer, pl_module):
        if trainer.current_epoch + 1 == self.epoch:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.zero_()


def _zero_keras(epoch: int):
    class ZeroKeras(keras.callbacks.Callback):
        def on_epoch_begin(self, index, logs=None):
            self.current = index + 1

        def on_test_begin(self, logs=None):
            if self.current == epoch:
                for w in self.model.trainable_weights:
                    w.assign(np.zeros(w.shape, w.dtype))

    return ZeroKeras()


def _train(backend, settings, run_dir, zero_epoch):
    splits = load_splits(settings.dataset, seed=settings.seed, train_images=settings.train_images)
    zero = _ZeroLightning(zero_epoch) if backend == "lightning" else _zero_keras(zero_epoch)
    outcome = TRAINERS[backend].train(settings, splits, run_dir, get_backend(backend).plan_devices(settings),
                                      callbacks=(zero,))
    return splits, finish(get_backend(backend), settings, splits, run_dir, outcome)


def _best_checkpoint_logits(backend, settings, splits, run_dir, images) -> np.ndarray:
    """The best checkpoint's logits for `images`, from the file, in a network built here."""
    if backend == "keras":
        return keras.models.load_model(run_dir / "checkpoints" / "best.keras").predict(images, verbose=0)
    state = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    net = (build_transfer(settings, splits).net if settings.finetune_epochs
           else torch_training.build_model(settings, splits).net)
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    with torch.no_grad():
        return net.eval()(torch.from_numpy(images)).numpy()


def _accuracy(logits, labels) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def _checkpoint_epoch(backend, run_dir) -> int | None:
    """The epoch Lightning's checkpoint says it holds (Keras' files do not say)."""
    if backend == "keras":
        return None
    return torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["epoch"] + 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_best_weights_are_tested_and_recorded(backend, tmp_path):
    settings = make_settings({**BASE, "epochs": 3, "out": str(tmp_path)})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    splits, results = _train(backend, settings, run_dir, zero_epoch=3)
    val_acc = [r["val/acc"] for r in results["history"]]
    best = int(np.argmax(val_acc)) + 1
    assert best < 3  # the zeroed last epoch is not the best
    assert results["test"]["weights"] == "best" and results["test"]["weights_epoch"] == best
    test_logits = _best_checkpoint_logits(backend, settings, splits, run_dir, splits.test.images)
    assert results["test"]["accuracy"] == pytest.approx(_accuracy(test_logits, splits.test.labels), abs=1e-9)
    # the checkpoint is the best epoch's: its validation accuracy is the one recorded for that epoch
    val_logits = _best_checkpoint_logits(backend, settings, splits, run_dir, splits.val.images)
    assert _accuracy(val_logits, splits.val.labels) == pytest.approx(val_acc[best - 1], abs=1e-6)
    assert _checkpoint_epoch(backend, run_dir) in (None, best)
    saved = np.load(run_dir / PREDICTIONS_FILE)  # the report's predictions come from the same weights
    assert np.array_equal(np.argmax(saved["probs"], axis=1), np.argmax(test_logits, axis=1))
    assert f"- Tested weights: the best checkpoint's (epoch {best}, " in (run_dir / "report.md").read_text()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_two_phase_run_tests_the_best_epoch_of_its_last_phase(backend, tmp_path):
    """Zeroed at the start of the fine-tuning phase, the run's best epoch lies in the first phase; the tested
    weights are still the fine-tuning phase's best."""
    settings = make_settings({**BASE, "epochs": 2, "finetune_epochs": 2, "out": str(tmp_path)})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    splits, results = _train(backend, settings, run_dir, zero_epoch=3)
    val_acc = [r["val/acc"] for r in results["history"]]
    assert int(np.argmax(val_acc)) + 1 <= 2  # the best epoch of the whole run is in the first phase
    best = 3 + int(np.argmax(val_acc[2:]))
    assert results["test"]["weights_epoch"] == best
    test_logits = _best_checkpoint_logits(backend, settings, splits, run_dir, splits.test.images)
    assert results["test"]["accuracy"] == pytest.approx(_accuracy(test_logits, splits.test.labels), abs=1e-9)
    val_logits = _best_checkpoint_logits(backend, settings, splits, run_dir, splits.val.images)
    assert _accuracy(val_logits, splits.val.labels) == pytest.approx(val_acc[best - 1], abs=1e-6)
    assert _checkpoint_epoch(backend, run_dir) in (None, best)
    assert "the highest validation accuracy of the fine-tuning phase)" in (run_dir / "report.md").read_text()


def test_a_run_with_other_test_weights_is_another_run(tmp_path):
    """Reuse (run_lab.py, the comparison tools) finds a finished run only under the same --test-weights;
    a run saved before the setting existed was tested with the last weights."""
    import json

    last = make_settings({"out": str(tmp_path)})
    best = make_settings({"out": str(tmp_path), "test_weights": "best"})
    run_dir = tmp_path / last.experiment / "keras" / "version_0"
    run_dir.mkdir(parents=True)
    older = {k: v for k, v in last.to_dict().items() if k != "test_weights"}
    (run_dir / "settings.json").write_text(json.dumps(older))
    assert find_matching(last, "keras") == run_dir
    assert find_matching(best, "keras") is None
