"""Speed: epochs of first_cnn (batch 32, Fashion-MNIST) five ways, in one process, in rounds.

    python -m bench.speed [--dataset fashion_mnist] [--epochs 3] [--rounds 3] [--gpus N]

The ways: a hand-written PyTorch loop over preloaded tensors; the project's Lightning path; a bare
Lightning Trainer (the project's module and batches, no callbacks, logger or progress bar: Lightning's
own loop); plain Keras model.fit on arrays; the project's Keras path. Each round runs every way for
--epochs epochs; the first epoch of each is warm-up and left out.
Prints each way's median epoch time (train + validation) per round and the ratios the README records:
project Lightning / hand-written loop, project Keras / plain Keras fit, each taken within a round (the
two ways ran back to back) and then the median over the rounds, so a change in the machine's speed
between rounds does not enter a ratio.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.common import benchmark_parser, hand_written_torch, plain_keras_fit, run_benchmark
from datamodules import load_splits
from lab.config.settings import make_settings
from lab.run.backend import get_backend


def project_times(backend: str, settings, splits) -> list[float]:
    """Epoch times (train + validation) of one run of the project's own training on `backend`."""
    trainer = get_backend(backend)
    plan = trainer.plan_devices(settings)
    with tempfile.TemporaryDirectory() as tmp:
        trained = trainer.train(settings, splits, Path(tmp), plan, resume=False)
    return [row["time/epoch_s"] for row in trained.record.history]


def bare_lightning_times(settings, splits) -> list[float]:
    """The project's LightningModule and batches in a Trainer with no callbacks, logger, checkpoints or
    progress bar: what Lightning's own loop costs, apart from what the project adds to it."""
    import pytorch_lightning as pl

    from callbacks.lightning_recorder import synchronize
    from datamodules.torch_data import ArraysDataModule
    from lightning_modules.training import build_module

    class EpochClock(pl.Callback):
        def __init__(self):
            self.times: list[float] = []

        def on_train_epoch_start(self, trainer, module):
            synchronize(trainer)
            self.start = time.perf_counter()

        def on_validation_epoch_end(self, trainer, module):
            synchronize(trainer)
            self.times.append(time.perf_counter() - self.start)

    plan, clock = get_backend("lightning").plan_devices(settings), EpochClock()
    pl.seed_everything(settings.seed, verbose=False)
    trainer = pl.Trainer(max_epochs=settings.epochs, accelerator=plan.accelerator, devices=plan.devices, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(build_module(settings, splits), datamodule=ArraysDataModule(splits, settings.batch_size, settings.seed))
    return clock.times


def _torch_device(settings) -> str:
    return "cuda" if get_backend("lightning").plan_devices(settings).accelerator == "gpu" else "cpu"


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("speed", __doc__)
    parser.add_argument("--dataset", default="fashion_mnist", help="dataset (default fashion_mnist)")
    parser.add_argument("--data-dir", default=None, help="where the dataset files are")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per way and round; the first is warm-up")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the five ways (default 3)")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs for the project paths (default: auto)")
    args = parser.parse_args(argv)
    settings = make_settings({"dataset": args.dataset, "data_dir": args.data_dir, "epochs": args.epochs,
                              "batch_size": 32, "model": "first_cnn", "gpus": args.gpus})
    splits = load_splits(settings.dataset, settings.data_dir, settings.seed, settings.val_fraction)
    ways = {
        "hand-written PyTorch loop":
            lambda: hand_written_torch(settings, splits, args.epochs, _torch_device(settings))[0],
        "project Lightning": lambda: project_times("lightning", settings, splits),
        "bare Lightning Trainer": lambda: bare_lightning_times(settings, splits),
        "plain Keras fit": lambda: plain_keras_fit(settings, splits, args.epochs),
        "project Keras": lambda: project_times("keras", settings, splits),
    }
    steady = {name: [] for name in ways}  # per round: the median epoch after warm-up
    for round_ in range(args.rounds):
        for name, way in ways.items():
            times = way()
            steady[name].append(statistics.median(times[1:]))
            print(f"round {round_ + 1}: {name}: " + ", ".join(f"{t:.2f}" for t in times) + " s", flush=True)
    print(f"\nfirst_cnn, batch 32, {settings.dataset} ({len(splits.train)} train images): median epoch "
          f"(train + validation) after warm-up, {args.rounds} rounds of {args.epochs} epochs")
    for name, rounds in steady.items():
        print(f"  {name:28s} " + "  ".join(f"{t:7.2f} s" for t in rounds))
    # Ratios within a round, where the two ways ran back to back; then their median over the rounds.
    lightning = _median_ratio(steady["project Lightning"], steady["hand-written PyTorch loop"])
    bare = _median_ratio(steady["bare Lightning Trainer"], steady["hand-written PyTorch loop"])
    keras = _median_ratio(steady["project Keras"], steady["plain Keras fit"])
    print(f"  project Lightning / hand-written loop: {lightning:.2f}x (target <= 1.10x)")
    print(f"  bare Lightning Trainer / hand-written loop: {bare:.2f}x (Lightning's own loop)")
    print(f"  project Keras / plain Keras fit:      {keras:.2f}x (target <= 1.05x)")


def _median_ratio(mine: list[float], reference: list[float]) -> float:
    return statistics.median(m / r for m, r in zip(mine, reference))


if __name__ == "__main__":
    run_benchmark(main)
