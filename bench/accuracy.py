"""Accuracy: first_cnn with the lab's hyperparameters (batch 32, Adam 1e-3), 5 epochs, on both
backends and the hand-written PyTorch loop, in one command.

    python -m bench.accuracy [--dataset fashion_mnist] [--epochs 5] [--out runs/bench-accuracy]

Targets: at least 89.5% test accuracy on both backends, each within 1 point of the hand-written loop.
"""
from __future__ import annotations

from bench.common import benchmark_parser, hand_written_torch, run_benchmark
from datamodules import load_splits
from lab.config.settings import make_settings
from lab.records.results import load_results
from lab.run.backend import in_training_order
from lab.run.runner import run_settings


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("accuracy", __doc__)
    parser.add_argument("--dataset", default="fashion_mnist", help="dataset (default fashion_mnist)")
    parser.add_argument("--data-dir", default=None, help="where the dataset files are")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (default 5)")
    parser.add_argument("--out", default="runs/bench-accuracy", help="where the two project runs are written")
    args = parser.parse_args(argv)
    settings = make_settings({"dataset": args.dataset, "data_dir": args.data_dir, "epochs": args.epochs,
                              "batch_size": 32, "optimizer": "adam", "lr": 1e-3, "model": "first_cnn",
                              "out": args.out, "name": f"first_cnn-{args.dataset}-{args.epochs}ep"})
    splits = load_splits(settings.dataset, settings.data_dir, settings.seed, settings.val_fraction)
    accuracies = {"hand-written PyTorch loop": hand_written_torch(settings, splits, args.epochs)[1]}
    for backend in in_training_order(("lightning", "keras")):
        accuracies[f"project {backend}"] = load_results(run_settings(backend, settings))["test"]["accuracy"]
    print(f"\nfirst_cnn, batch 32, Adam 1e-3, {args.epochs} epochs, {args.dataset}: test accuracy")
    reference = accuracies["hand-written PyTorch loop"]
    for name, acc in accuracies.items():
        gap = (acc - reference) * 100
        print(f"  {name:28s} {acc:.2%}  ({gap:+.2f} points vs the hand-written loop)")
    ok = all(acc >= 0.895 and abs(acc - reference) <= 0.01 for name, acc in accuracies.items() if "project" in name)
    print("targets (>= 89.5%, within 1 point):", "met" if ok else "NOT met")


if __name__ == "__main__":
    run_benchmark(main)
