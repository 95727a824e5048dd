"""Cost of augmentation: median epoch time (train + validation) without and with it, on each backend.

    python -m bench.augment_cost [--width 16] [--depth 3] [--epochs 3] [--train-images 9000] [--rounds 1]
                                 [--flip true --crop-pad 4 --rotate 0 --color-jitter 0 --cutout 0]

The project's own training (the same code as train_*.py) of cifar_cnn on CIFAR-10, on the first
--train-images training images and a validation set cut in proportion; runs without and with
augmentation alternate, so a change in the machine's load hits both alike. Target: <= 1.3x.
"""
from __future__ import annotations

import statistics

from bench.common import add_cifar_epoch_flags, benchmark_parser, run_benchmark, steady
from bench.speed import project_times
from datamodules import load_splits
from datamodules.base import DataSplits, ImageSet
from lab.config.settings import make_settings, parse_bool
from lab.run.backend import parse_backends
from lab.specs.augmentation import AugmentSpec

TARGET = 1.3


def cut(splits: DataSplits, train_images: int) -> DataSplits:
    """The first train_images training images and a validation set of the same share."""
    keep_val = max(1, round(len(splits.val) * train_images / len(splits.train)))
    part = lambda s, n: ImageSet(s.images[:n], s.labels[:n])  # noqa: E731
    return DataSplits(splits.name, part(splits.train, train_images), part(splits.val, keep_val), splits.test,
                      splits.class_names, splits.source, splits.mean, splits.std)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("augment_cost", __doc__)
    add_cifar_epoch_flags(parser, rounds=1)
    parser.add_argument("--backends", default="lightning,keras", help="backends to time (default lightning,keras)")
    parser.add_argument("--torch-threads", type=int, default=None, help="PyTorch CPU threads (default: its choice)")
    parser.add_argument("--flip", type=parse_bool, default=True, help="random horizontal flip (default true)")
    parser.add_argument("--crop-pad", type=int, default=4, help="pad-and-crop padding in pixels (default 4)")
    parser.add_argument("--rotate", type=float, default=0.0, help="rotation range in degrees (default 0)")
    parser.add_argument("--color-jitter", type=float, default=0.0, help="jitter strength (default 0)")
    parser.add_argument("--cutout", type=int, default=0, help="cutout square size (default 0)")
    args = parser.parse_args(argv)
    backends = parse_backends(args.backends)  # before the data is loaded
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    augment = {"flip": args.flip, "crop_pad": args.crop_pad, "rotate": args.rotate,
               "color_jitter": args.color_jitter, "cutout": args.cutout}
    base = {"dataset": "folder", "data_dir": args.data_dir, "model": "cifar_cnn", "width": args.width,
            "depth": args.depth, "batch_size": args.batch_size, "epochs": args.epochs, "accelerator": "cpu"}
    splits = cut(load_splits("folder", args.data_dir), args.train_images)
    plain = make_settings(base)
    augmented = make_settings({**base, **augment})
    spec = AugmentSpec.from_settings(augmented)
    results = {}
    for backend in backends:
        times = {"without": [], "with": []}
        for _ in range(args.rounds):
            for label, settings in (("without", plain), ("with", augmented)):
                times[label].append(steady(project_times(backend, settings, splits)))
        results[backend] = {label: statistics.median(t) for label, t in times.items()}
    print(f"\ncifar_cnn width {args.width} depth {args.depth}, batch {args.batch_size}, {len(splits.train):,} "
          f"training images; augmentation: {spec.describe()}; median epoch time after warm-up")
    for backend, t in results.items():
        ratio = t["with"] / t["without"]
        print(f"  {backend:9s} without {t['without']:7.2f} s   with {t['with']:7.2f} s   ratio {ratio:.2f}x "
              f"(target <= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'})")


if __name__ == "__main__":
    run_benchmark(main)
