"""PyTorch after Keras in one process: the hand-written PyTorch loop timed before TensorFlow is imported,
after a plain Keras fit, and after the project's Keras path (its tf.data pipeline), in one process.

    python -m bench.interference [--dataset fashion_mnist] [--train-images 15000]

It found PyTorch up to 1.5x slower after the project's Keras path while that path trained under a
OneDeviceStrategy on the CPU; with the plain device scope it uses now, it finds no slowdown (README, Speed).
"""
from __future__ import annotations

from dataclasses import replace

from bench.common import benchmark_parser, hand_written_torch, plain_keras_fit, run_benchmark
from bench.speed import project_times
from datamodules import ImageSet, load_splits
from lab.config.settings import make_settings


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("interference", __doc__)
    parser.add_argument("--dataset", default="fashion_mnist", help="dataset (default fashion_mnist)")
    parser.add_argument("--data-dir", default=None, help="where the dataset files are")
    parser.add_argument("--train-images", type=int, default=15000, help="training images (default 15000)")
    args = parser.parse_args(argv)
    settings = make_settings({"dataset": args.dataset, "data_dir": args.data_dir, "epochs": 1, "batch_size": 32,
                              "model": "first_cnn"})
    splits = load_splits(settings.dataset, settings.data_dir)
    n = args.train_images
    splits = replace(splits, train=ImageSet(splits.train.images[:n], splits.train.labels[:n]))

    def torch_epoch(when: str) -> None:
        seconds = hand_written_torch(settings, splits, 1)[0][0]
        print(f"hand-written PyTorch epoch {when:38s} {seconds:6.2f} s", flush=True)

    torch_epoch("(warm-up)")
    torch_epoch("before TensorFlow")
    from core.frameworks import tf  # noqa: F401  (TensorFlow, loaded as the project loads it)

    torch_epoch("after importing TensorFlow")
    plain_keras_fit(settings, splits, 1)
    torch_epoch("after a plain Keras fit")
    project_times("keras", settings, splits)
    torch_epoch("after the project's Keras path")
    torch_epoch("after the project's Keras path, again")


if __name__ == "__main__":
    run_benchmark(main)
