"""Keras after PyTorch in one process, as bench.speed used to run every way: why Keras took twice its standalone
time there. Plain Keras fit epochs in a fresh process, and in a fresh process where the fair hand-written
PyTorch loop trained first; each way a fresh process, in interleaved rounds.

    python -m bench.in_process [--train-images 20000] [--rounds 3] [--epochs 3]

The ways: Keras alone (PyTorch imported but idle, as every Keras process of the project has it); Keras after
PyTorch trained; the same with OMP_WAIT_POLICY=passive (PyTorch's OpenMP threads sleep at once instead of
spinning after each parallel region); the same with PyTorch on one thread (torch.set_num_threads(1)) after its
loop. Prints the median Keras epoch after warm-up per way and its ratio to Keras alone, per round.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import (
    benchmark_parser,
    fair_torch_loop,
    fresh_process,
    interleaved_rounds,
    plain_keras_fit,
    run_benchmark,
    steady,
)

WAYS = {"alone": ("Keras alone", {}),
        "after-torch": ("Keras after PyTorch trained", {}),
        "after-torch-passive": ("Keras after PyTorch, OMP_WAIT_POLICY=passive", {"OMP_WAIT_POLICY": "passive"}),
        "after-torch-1-thread": ("Keras after PyTorch, then torch.set_num_threads(1)", {})}


def child(args) -> None:
    from datamodules import load_splits
    from lab.config.settings import make_settings

    settings = make_settings({"dataset": args.dataset, "data_dir": args.data_dir, "epochs": args.epochs,
                              "train_images": args.train_images})
    splits = load_splits(settings.dataset, settings.data_dir, settings.seed, settings.val_fraction,
                         train_images=settings.train_images)
    torch_s = None
    if args.way != "alone":
        torch_s = fair_torch_loop(settings, splits, 1)[0][0]["time/epoch_s"]
        if args.way == "after-torch-1-thread":
            import torch

            torch.set_num_threads(1)
    times = plain_keras_fit(settings, splits, settings.epochs)
    Path(args.result).write_text(json.dumps({"times": times, "torch_s": torch_s}))


def run_way(args, way: str, logs: Path) -> dict:
    result = logs / f"{way}.json"
    argv = [sys.executable, "-m", "bench.in_process", "--way", way, "--result", str(result), "--dataset",
            args.dataset, "--epochs", str(args.epochs), "--train-images", str(args.train_images)]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    return fresh_process(argv, result, logs / f"{way}.log", env=WAYS[way][1])


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("in_process", __doc__)
    parser.add_argument("--dataset", default="fashion_mnist", help="dataset (default fashion_mnist)")
    parser.add_argument("--data-dir", default=None, help="where the dataset files are")
    parser.add_argument("--train-images", type=int, default=20000, help="training images (default 20000)")
    parser.add_argument("--epochs", type=int, default=3, help="Keras epochs per run; the first is warm-up")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the ways (default 3)")
    parser.add_argument("--way", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.way:
        return child(args)
    with tempfile.TemporaryDirectory() as logs:
        results = interleaved_rounds(args.rounds, ["keras"], {k: k for k in WAYS},
                                     lambda _, way: run_way(args, way, Path(logs)),
                                     lambda r: ", ".join(f"{t:.2f}" for t in r["times"]) + " s"
                                     + (f" (PyTorch epoch {r['torch_s']:.2f} s before)" if r["torch_s"] else ""))
    per_round = {way: [steady(r["times"]) for r in runs] for way, runs in results["keras"].items()}
    print(f"\nplain Keras fit, first_cnn, batch 32, {args.train_images} {args.dataset} images: median epoch after "
          f"warm-up, {args.rounds} rounds, each run a fresh process")
    for way, rounds in per_round.items():
        ratios = [t / alone for t, alone in zip(rounds, per_round["alone"])]
        print(f"  {WAYS[way][0]:52s} " + "  ".join(f"{t:6.2f} s" for t in rounds)
              + f"   / alone: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    run_benchmark(main)
