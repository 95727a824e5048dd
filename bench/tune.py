"""Tuning: a keras-tuner search of 30 minutes on Fashion-MNIST, whose best model, retrained, must beat
first_cnn trained as long by at least 1.5 points of test accuracy. One backend per call:

    python -m bench.tune --backend keras|lightning [--minutes 30] [--epochs 10] [--out runs/bench-tune]

Runs tune_keras.py's search with the flags printed below (a CPU-sized space, random search, each trial
up to 3 epochs on 30% of the training images), then retrains the best configuration and first_cnn for
--epochs on all of them, and prints the figures the README's Benchmarks section records.
"""
from __future__ import annotations

import os
import time

from bench.common import benchmark_parser, run_benchmark

SPACE = ["--blocks", "2-3", "--filters", "32", "--kernel-size", "3", "--padding", "same", "--batch-norm", "true,false",
         "--pool", "true", "--dropout", "0.2,0.3,0.4", "--dense-units", "128", "--optimizer", "adam",
         "--lr", "0.001,0.002", "--batch-size", "64,128"]
TARGET_POINTS = 1.5


def tune_argv(args) -> list[str]:
    return ["--backend", args.backend, "--dataset", args.dataset, "--tuner", "random", "--max-epochs", "3",
            "--max-trials", "20", "--patience", "2", "--trial-fraction", "0.3", "--time-budget", str(args.minutes),
            "--epochs", str(args.epochs), "--out", args.out, "--name", "bench-tune", *SPACE,
            *(["--data-dir", args.data_dir] if args.data_dir else []), *(["--overwrite"] if args.overwrite else [])]


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("tune", __doc__)
    parser.add_argument("--backend", choices=("keras", "lightning"), required=True, help="framework of the trials")
    parser.add_argument("--minutes", type=float, default=30, help="time budget of the search (default 30)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the retrained best and first_cnn")
    parser.add_argument("--dataset", default="fashion_mnist", help="dataset (default fashion_mnist)")
    parser.add_argument("--data-dir", default=None, help="where the dataset files are")
    parser.add_argument("--out", default="runs/bench-tune", help="where the search and the runs are written")
    parser.add_argument("--overwrite", action="store_true", help="start the search afresh")
    args = parser.parse_args(argv)
    search_argv = tune_argv(args)

    from lab.records.results import load_results
    from lab.tuning.search import run_search
    from lab.tuning.tune_cli import build_parser, options

    load = os.getloadavg()[0]
    started = time.monotonic()
    outcome = run_search(*options(build_parser("tune_keras.py", args.backend).parse_args(search_argv)))
    total = time.monotonic() - started
    tuned, baseline = (load_results(run) for run in (outcome.best_run, outcome.baseline_run))
    points = 100 * (tuned["test"]["accuracy"] - baseline["test"]["accuracy"])
    print(f"\n## Tuning benchmark, {args.backend}\n")
    print(f"command: python tune_keras.py {' '.join(search_argv)}")
    print(f"machine: {os.cpu_count()} CPU cores, load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"search: {outcome.trials_run} trials in {outcome.search_s / 60:.1f} min (budget {args.minutes:g} min)")
    for name, results in (("tuned cnn", tuned), ("first_cnn", baseline)):
        print(f"  {name:10s} {args.epochs} epochs: test accuracy {results['test']['accuracy']:.2%}, "
              f"{results['params']['total']:,} parameters, training {results['timing']['total_s']:.0f} s")
    print(f"difference: {points:+.2f} points (target >= {TARGET_POINTS}): "
          f"{'met' if points >= TARGET_POINTS else 'NOT met'}; search within {args.minutes:g} min: "
          f"{'met' if outcome.search_s <= 60 * args.minutes else 'NOT met'}")
    print(f"retraining both: {outcome.retrain_s / 60:.1f} min; whole benchmark {total / 60:.1f} min")
    print(f"summary: {outcome.folder / 'summary.md'}")


if __name__ == "__main__":
    run_benchmark(main)
