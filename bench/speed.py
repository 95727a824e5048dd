"""Speed: one epoch of first_cnn (batch 32, Fashion-MNIST) four ways, in one process, several rounds.

    python bench/speed.py [--dataset fashion_mnist] [--epochs 4] [--data-dir DIR] [--gpus N]

Prints the median epoch time (train + validation, warm-up epoch left out) of each way, and the
ratios the README records: project Lightning / hand-written loop, project Keras / plain fit.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common  # noqa: F401  (puts the project on the path)
from common import hand_written_torch, plain_keras_fit, steady

from datamodules import load_splits
from lab.settings import make_settings


def project_times(backend: str, settings, splits) -> list[float]:
    import importlib

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
    parser.add_argument("--epochs", type=int, default=4, help="epochs per way; the first is warm-up")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs for the project paths (default: auto)")
    args = parser.parse_args()
    settings = make_settings({"dataset": args.dataset, "data_dir": args.data_dir, "epochs": args.epochs,
                              "batch_size": 32, "model": "first_cnn", "gpus": args.gpus})
    splits = load_splits(settings.dataset, settings.data_dir, settings.seed, settings.val_fraction)
    medians = {
        "hand-written PyTorch loop": steady(hand_written_torch(settings, splits, args.epochs, _torch_device(settings))[0]),
        "project Lightning": steady(project_times("lightning", settings, splits)),
        "plain Keras fit": steady(plain_keras_fit(settings, splits, args.epochs)),
        "project Keras": steady(project_times("keras", settings, splits)),
    }
    print(f"\nfirst_cnn, batch 32, {settings.dataset}: median epoch (train + validation) over "
          f"{args.epochs - 1} epochs after warm-up")
    for name, seconds in medians.items():
        print(f"  {name:28s} {seconds:7.2f} s")
    lightning = medians["project Lightning"] / medians["hand-written PyTorch loop"]
    keras = medians["project Keras"] / medians["plain Keras fit"]
    print(f"  project Lightning / hand-written loop: {lightning:.2f}x (target <= 1.10x)")
    print(f"  project Keras / plain Keras fit:      {keras:.2f}x (target <= 1.05x)")


if __name__ == "__main__":
    main()
