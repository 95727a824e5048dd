"""What a OneDeviceStrategy costs the project's Keras training on the CPU, against the plain device scope
that keras_models.training.placement uses there.

    python -m bench.keras_placement [--width 16] [--depth 3] [--epochs 3] [--train-images 9000] [--rounds 2]

The project's own Keras training of cifar_cnn on the first --train-images CIFAR-10 training images, run
in alternation with placement() as it is and with placement() swapped for OneDeviceStrategy("/cpu:0"),
the way the project placed CPU runs before, each run in a fresh process (in one process the two ways
affect each other). Prints the median epoch time after warm-up of each way.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from bench.augment_cost import cut
from bench.common import REPO, add_cifar_epoch_flags, benchmark_parser, run_benchmark, steady
from bench.speed import project_times
from datamodules import load_splits
from lab.config.settings import make_settings

WAYS = ("scope", "strategy")


def one_device_strategy(plan):
    from core.frameworks import tf

    return tf.distribute.OneDeviceStrategy("/cpu:0").scope()


def main(argv: list[str] | None = None) -> int | None:
    parser = benchmark_parser("keras_placement", __doc__)
    add_cifar_epoch_flags(parser, rounds=2)
    parser.add_argument("--way", choices=WAYS, default=None,
                        help="time one way in this process and print its epoch time (used by the benchmark itself)")
    args = parser.parse_args(argv)
    if args.way:
        print(f"EPOCH {one_way(args)}")
        return None
    load_splits("folder", args.data_dir)  # a bad --data-dir ends here, in one line; the runs reuse the decoded cache
    times = {way: [] for way in WAYS}
    for _ in range(args.rounds):
        for way in WAYS:
            out = subprocess.run([sys.executable, "-m", "bench.keras_placement", *way_argv(args, way)], cwd=REPO,
                                 capture_output=True, text=True)
            if out.returncode:  # a LabError's one line (exit code 2), or the end of a crash's traceback
                sys.stderr.write(out.stderr[-2000:])
                return out.returncode
            times[way].append(float(out.stdout.split("EPOCH ")[-1]))
            print(f"  {way}: {times[way][-1]:.2f} s", flush=True)
    medians = {way: statistics.median(t) for way, t in times.items()}
    print(f"\nKeras, cifar_cnn width {args.width} depth {args.depth}, batch {args.batch_size}, "
          f"{args.train_images:,} training images; median epoch time after warm-up over {args.rounds} round(s)")
    for way, seconds in medians.items():
        print(f"  {way:18s} {seconds:7.2f} s")
    print(f"  OneDeviceStrategy / device scope: {medians['strategy'] / medians['scope']:.2f}x")
    return None


def way_argv(args, way: str) -> list[str]:
    """The flags of one timed run in a fresh process. It starts in the repository root, where the bench
    package is importable, so the data's path is made absolute."""
    flags = {**vars(args), "data_dir": Path(args.data_dir).expanduser().resolve(), "way": way}
    del flags["rounds"]
    return [f"--{name.replace('_', '-')}={value}" for name, value in flags.items()]


def one_way(args) -> float:
    import keras_models.training as keras_training

    settings = make_settings({"dataset": "folder", "data_dir": args.data_dir, "model": "cifar_cnn",
                              "width": args.width, "depth": args.depth, "batch_size": args.batch_size,
                              "epochs": args.epochs, "accelerator": "cpu"})
    splits = cut(load_splits("folder", args.data_dir), args.train_images)
    if args.way == "strategy":  # KerasBackend.train enters keras_models.training.placement(plan)
        keras_training.placement = one_device_strategy
    return steady(project_times("keras", settings, splits))


if __name__ == "__main__":
    run_benchmark(main)
