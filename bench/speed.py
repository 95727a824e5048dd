"""Speed: epochs of first_cnn (batch 32, Fashion-MNIST) four ways, in one process, in rounds.

    python bench/speed.py [--dataset fashion_mnist] [--epochs 3] [--rounds 2] [--gpus N]

Each round runs every way for --epochs epochs; the first epoch of each is warm-up and left out.
Prints each way's median epoch time (train + validation) and the ratios the README records:
project Lightning / hand-written loop, project Keras / plain Keras fit. The rounds interleave the
ways, so load from other work on the machine falls on all of them alike.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import tempfile
from pathlib import Path

import common  # noqa: F401  (puts the project on the path)
from common import hand_written_torch, plain_keras_fit

from datamodules import load_splits
from lab.settings import make_settings


def project_times(backend: str, settings, splits) -> list[float]:
    trainer = importlib.import_module(f"{'lightning_modules' if backend == 'lightning' else 'keras_models'}.training")
    plan = trainer.configure_devices(settings)
    with tempfile.TemporaryDirectory() as tmp:
        outcome = trainer.train(settings, splits, Path(tmp), resume=False, plan=plan)
    return [row["time/epoch_s"] for row in outcome.record.history]


def _torch_device(settings) -> str:
    from lightning_modules.training import configure_devices

    return "cuda" if configure_devices(settings).accelerator == "gpu" else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist", help="dataset (default fashion_mnist)")
    parser.add_argument("--data-dir", default=None, help="where the dataset files are")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per way and round; the first is warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the four ways")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs for the project paths (default: auto)")
    args = parser.parse_args()
    settings = make_settings({"dataset": args.dataset, "data_dir": args.data_dir, "epochs": args.epochs,
                              "batch_size": 32, "model": "first_cnn", "gpus": args.gpus})
    splits = load_splits(settings.dataset, settings.data_dir, settings.seed, settings.val_fraction)
    ways = {
        "hand-written PyTorch loop": lambda: hand_written_torch(settings, splits, args.epochs, _torch_device(settings))[0],
        "project Lightning": lambda: project_times("lightning", settings, splits),
        "plain Keras fit": lambda: plain_keras_fit(settings, splits, args.epochs),
        "project Keras": lambda: project_times("keras", settings, splits),
    }
    steady = {name: [] for name in ways}
    for round_ in range(args.rounds):
        for name, way in ways.items():
            times = way()
            steady[name] += times[1:]
            print(f"round {round_ + 1}: {name}: " + ", ".join(f"{t:.2f}" for t in times) + " s")
    medians = {name: statistics.median(times) for name, times in steady.items()}
    print(f"\nfirst_cnn, batch 32, {settings.dataset} ({len(splits.train)} train images): median epoch "
          f"(train + validation) over {args.rounds} x {args.epochs - 1} epochs after warm-up")
    for name, seconds in medians.items():
        print(f"  {name:28s} {seconds:7.2f} s")
    lightning = medians["project Lightning"] / medians["hand-written PyTorch loop"]
    keras = medians["project Keras"] / medians["plain Keras fit"]
    print(f"  project Lightning / hand-written loop: {lightning:.2f}x (target <= 1.10x)")
    print(f"  project Keras / plain Keras fit:      {keras:.2f}x (target <= 1.05x)")


if __name__ == "__main__":
    main()
