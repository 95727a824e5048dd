"""The Lightning path computes what a plain loop computes; its speed departures (lightning_modules.speedups) change
nothing but time.

The benchmarks' fair hand-written loop (bench.common.fair_torch_loop) records what the Lightning path records:
the same training and validation loss and accuracy, epoch by epoch, from the same initial weights and batches.
So the speed ratio against it measures the framework and nothing else, and the Lightning module's metrics
equal the ones computed by hand. Resume and checkpoints: tests/test_resume.py, tests/test_transfer.py."""
from __future__ import annotations

import pytest

from lab.config.settings import make_settings


def test_the_fair_loop_records_what_lightning_records(tmp_path):
    """Also: with no self.log per step, the bar reads the running means: the first batch's loss after one step,
    the epoch's recorded training loss and accuracy after the last."""
    from bench.common import fair_torch_loop
    from datamodules import load_splits
    from lab.records.recording import EPOCH_TAGS
    from lab.run.backend import get_backend
    from lightning_modules.training import train

    settings = make_settings({"dataset": "digits", "epochs": 2, "profile": False})
    splits = load_splits("digits")
    bar = bar_probe()
    lightning = train(settings, splits, tmp_path, get_backend("lightning").plan_devices(settings),
                      callbacks=(bar,)).record.history
    by_hand, _ = fair_torch_loop(settings, splits, settings.epochs)
    assert [row["epoch"] for row in lightning] == [row["epoch"] for row in by_hand] == [1, 2]
    for mine, theirs in zip(lightning, by_hand):
        for tag in EPOCH_TAGS[:-1]:
            assert mine[tag] == pytest.approx(theirs[tag], rel=1e-5), (mine["epoch"], tag)
    assert len(bar.shown) == 4  # each epoch's first and last batch
    for row, (first, first_loss), (last, _) in zip(lightning, bar.shown[::2], bar.shown[1::2]):
        assert first["loss"] == pytest.approx(first_loss, rel=1e-6) != last["loss"]
        assert last["loss"] == pytest.approx(row["train/loss"], rel=1e-6)
        assert last["acc"] == pytest.approx(row["train/acc"], rel=1e-6)


def bar_probe():
    """A callback reading what the project's progress bar shows after each epoch's first and last batch."""
    import pytorch_lightning as pl

    from callbacks.lightning_progress import RunningMetricsBar

    class Probe(pl.Callback):
        def __init__(self):
            self.shown: list[tuple[dict, float]] = []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if batch_idx in (0, trainer.num_training_batches - 1):
                metrics = RunningMetricsBar().get_metrics(trainer, module)
                self.shown.append(({"loss": metrics["loss"], "acc": metrics["acc"]}, float(outputs["loss"])))

    return Probe()


def test_on_a_machine_without_a_gpu_torch_stops_looking_for_one(monkeypatch):
    import os

    import torch

    from lab.run.backend import get_backend

    if torch.cuda.device_count() or not torch.backends.cuda.is_built():
        pytest.skip("a GPU, or a torch without CUDA: nothing is probed at every step")
    settings = make_settings({"dataset": "digits"})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    get_backend("lightning").plan_devices(settings)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"  # the user's, left alone
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    get_backend("lightning").plan_devices(settings)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "" and torch.cuda.device_count() == 0
    assert torch.accelerator.current_accelerator(check_available=True) is None


def test_the_modules_fast_attribute_path_keeps_modules_and_parameters_registered():
    import torch

    from datamodules import load_splits
    from lightning_modules.training import build_model

    module = build_model(make_settings({"dataset": "digits"}), load_splits("digits"))
    module._current_fx_name = "training_step"
    module.extra = torch.nn.Linear(2, 2)
    module.scale = torch.nn.Parameter(torch.ones(1))
    assert module._current_fx_name == "training_step" and "_current_fx_name" not in module.state_dict()
    assert "extra" in dict(module.named_children()) and "scale" in dict(module.named_parameters())


def test_the_best_checkpoint_keeps_modelcheckpoints_key(tmp_path):
    """Checkpoints file each callback's state under its state_key: a run saved before resumes after."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from callbacks.lightning_checkpoint import LastPhaseBest

    ours = LastPhaseBest(tmp_path, 0)
    theirs = ModelCheckpoint(tmp_path, filename="best", monitor="val/acc", mode="max", save_on_train_epoch_end=True,
                             enable_version_counter=False)
    assert ours.state_key == theirs.state_key and "LastPhaseBest" not in ours.state_key


def test_every_speed_departure_off_gives_the_same_history(tmp_path):
    """lightning_modules.speedups.stock(): stock Lightning objects, the same epochs, to the last bit on the CPU."""
    import pytorch_lightning as pl

    from datamodules import load_splits
    from lab.run.backend import get_backend
    from lightning_modules import speedups
    from lightning_modules.training import train

    settings = make_settings({"dataset": "digits", "epochs": 2, "profile": False})
    splits = load_splits("digits")
    seen = {}

    class Look(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            seen[speedups.enabled()] = sorted(trainer.callback_metrics)

    plan = get_backend("lightning").plan_devices(settings)
    fast = train(settings, splits, tmp_path / "fast", plan, callbacks=(Look(),)).record.history
    with speedups.stock():
        stock = train(settings, splits, tmp_path / "stock", plan, callbacks=(Look(),)).record.history
    assert speedups.enabled()
    assert "train/step_loss" in seen[False] and "train/step_loss" not in seen[True]
    assert [{k: v for k, v in row.items() if k != "time/epoch_s"} for row in fast] == \
        [{k: v for k, v in row.items() if k != "time/epoch_s"} for row in stock]
