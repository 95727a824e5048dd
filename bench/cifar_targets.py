"""CIFAR-10 with cifar_cnn on the CPU, both backends: the 75%-in-15-epochs target and the effect of augmentation.

    python -m bench.cifar_targets probe [--widths 8,16,32] [--depths 3] [--batch-size 128]
    python -m bench.cifar_targets run [--width 16] [--depth 3] [--epochs 15] [--batch-size 128] [--out runs/bench-cifar]

Both take --dataset folder (the shared CIFAR-10 JPEGs, default) or cifar10 (the official files) and --data-dir.

probe: times training steps of cifar_cnn on CIFAR batches for each width and depth on each backend and
extrapolates the epoch time (45,000 training images), to choose a size whose 15 epochs fit the budget.
run: augment_compare.py on CIFAR (without, then with flip + crop-pad 4), then the targets: test accuracy
>= 75% on both backends, and a smaller train-validation gap with augmentation than without.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench.common import SHARED_CIFAR as CIFAR
from bench.common import benchmark_parser, run_benchmark
from core.errors import LabError
from datamodules import load_splits
from lab.comparisons import commands, with_augmentation
from lab.config.settings import ExperimentSettings, make_settings
from lab.records.results import load_results
from lab.reports.comparison import run_row
from lab.specs.models import model_spec

TARGET = 0.75
OPTIONAL_LAYERS = {"BatchNorm", "Dropout", "ReLU"}  # removing them keeps every shape


def probe(args) -> None:
    without = [name for name in args.without.split(",") if name]
    if set(without) - OPTIONAL_LAYERS:
        raise LabError(f"--without takes {', '.join(sorted(OPTIONAL_LAYERS))}, got {args.without!r}.")
    splits = load_splits(args.dataset, args.data_dir)
    images, labels = splits.train.images[:args.batch_size], splits.train.labels[:args.batch_size]
    print(f"cifar_cnn{f' without {args.without}' if args.without else ''}, batch {args.batch_size}: median of "
          f"{args.steps} timed training steps -> one epoch of {len(splits.train):,} images")
    for depth in map(int, args.depths.split(",")):
        for width in map(int, args.widths.split(",")):
            settings = make_settings({"model": "cifar_cnn", "width": width, "depth": depth,
                                      "batch_size": args.batch_size})
            spec = [layer for layer in model_spec(settings, splits.input_shape, splits.num_classes)
                    if type(layer).__name__ not in without]
            for backend, step in (("lightning", _torch_step), ("keras", _keras_step)):
                seconds = _median_step(step(spec, settings, splits, images, labels), args.steps)
                epoch = seconds * -(-len(splits.train) // args.batch_size)
                print(f"  width {width:3d} depth {depth} {backend:9s} {1000 * seconds:7.0f} ms/step  "
                      f"~{epoch:6.0f} s/epoch  ~{15 * epoch / 60:5.0f} min for 15 epochs", flush=True)


def _median_step(step, count: int) -> float:
    step(), step()  # warm-up: graph building, allocations
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _torch_step(spec, settings: ExperimentSettings, splits, images, labels):
    import torch
    from torch.nn import functional as F

    from lightning_modules.components import build_network

    net = build_network(spec, splits.input_shape, splits.mean, splits.std)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr, eps=1e-7)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)

    def step():
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return step


def _keras_step(spec, settings: ExperimentSettings, splits, images, labels):
    from keras_models.compiling import compile_model
    from keras_models.components.network import build_network
    from lab.specs.optimizer import OptimizerSpec

    model = compile_model(build_network(spec, splits.input_shape, splits.mean, splits.std, name="cifar_cnn"),
                          OptimizerSpec.from_settings(settings))
    return lambda: model.train_on_batch(images, labels)


def run(args) -> int:
    name = f"cifar_cnn-w{args.width}-d{args.depth}-b{args.batch_size}-{args.epochs}ep"
    argv = ["--dataset", args.dataset, *(["--data-dir", args.data_dir] if args.data_dir else []),
            "--model", "cifar_cnn", "--width", str(args.width), "--depth", str(args.depth),
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--flip", "true", "--crop-pad", "4", "--save-augmented", "true", "--out", args.out,
            "--name", name if args.dataset == "folder" else f"{name}-{args.dataset}",
            "--backends", args.backends, "--accelerator", "cpu"]
    start = time.perf_counter()
    run_dirs, written = with_augmentation.run_pair(commands.augment_parser().parse_args(argv))
    print(f"\n{with_augmentation.summary(run_dirs)}\n\ncomparison: {written['markdown']}")
    print(f"wall time of this command: {(time.perf_counter() - start) / 60:.1f} min (reused runs take none)")
    return report_targets(run_dirs)


def report_targets(run_dirs: list[Path]) -> int:
    rows = {}
    for run_dir in run_dirs:
        row = run_row(run_dir, load_results(run_dir))
        rows[(row["backend"], "aug" if row["experiment"].endswith("-aug") else "noaug")] = row
    met = True
    for backend in dict.fromkeys(b for b, _ in rows):
        plain, augmented = rows[(backend, "noaug")], rows[(backend, "aug")]
        best = max(plain["accuracy"], augmented["accuracy"])
        reached, smaller = best >= 100 * TARGET, augmented["gap"] < plain["gap"]
        met &= reached and smaller
        print(f"{backend:9s} test accuracy {plain['accuracy']:.2f}% without, {augmented['accuracy']:.2f}% with "
              f"augmentation (target >= {TARGET:.0%}: {'met' if reached else 'NOT met'}); train-val gap "
              f"{plain['gap']:+.2f} -> {augmented['gap']:+.2f} pp ({'smaller' if smaller else 'NOT smaller'}); "
              f"{plain['time_s'] / 60:.1f} + {augmented['time_s'] / 60:.1f} min of training")
    return 0 if met else 1


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser("cifar_targets", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe", help="time training steps to choose width and depth")
    p.add_argument("--widths", default="8,16,32", help="comma-separated widths to time (default 8,16,32)")
    p.add_argument("--depths", default="3", help="comma-separated depths to time (default 3)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per size and backend (default 10)")
    p.add_argument("--without", default="", help="comma-separated layer types to leave out, e.g. BatchNorm,Dropout, "
                                                 "to see what they cost (default: none)")
    r = sub.add_parser("run", help="train without and with augmentation on both backends, check the targets")
    r.add_argument("--width", type=int, default=16, help="cifar_cnn width (default 16)")
    r.add_argument("--depth", type=int, default=3, help="cifar_cnn depth (default 3)")
    r.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    r.add_argument("--backends", default="lightning,keras", help="backends to run (default lightning,keras)")
    r.add_argument("--out", default="runs/bench-cifar", help="root folder of the runs (default runs/bench-cifar)")
    for sp in (p, r):
        sp.add_argument("--dataset", choices=("folder", "cifar10"), default="folder",
                        help="'folder': the CIFAR-10 JPEGs (default); 'cifar10': the official python files")
        sp.add_argument("--data-dir", default=None,
                        help=f"where the dataset is (default: {CIFAR} for 'folder', the usual data folder for "
                             "'cifar10', which downloads there when it can)")
        sp.add_argument("--batch-size", type=int, default=128, help="images per training batch (default 128)")
        sp.add_argument("--torch-threads", type=int, default=None,
                        help="PyTorch CPU threads (default: PyTorch's choice); on a CPU shared with other jobs, "
                             "1 can be much faster than 2")
    args = parser.parse_args(argv)
    if args.dataset == "folder" and args.data_dir is None:
        args.data_dir = CIFAR
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    if args.command == "probe":
        probe(args)
        return 0
    return run(args)


if __name__ == "__main__":
    run_benchmark(main)
