"""How much of a finished run's test accuracy its batch norm's running statistics cost: the test set scored as
trained, then with the statistics recomputed from the final weights as --bn-recalibration recomputes them
(lab.run.recalibration: a plain average over a seeded random sample of the training images, in the run's precision),
without writing anything to the run.

    python -m bench.bn_statistics RUN_DIR [RUN_DIR ...] [--images 5120] [--threads 1]

The running statistics are an exponential average (Keras' momentum 0.99, PyTorch's 0.01 in the lab's networks) over
the last hundred or so steps, so they lag the weights; how far depends on the steps an epoch. Each line: the run, its
backend and precision, its batch norms that train, the test accuracy as trained and recomputed, in percent.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench.common import benchmark_parser, run_benchmark


def _parser():
    parser = benchmark_parser("bn_statistics", __doc__)
    parser.add_argument("runs", nargs="+", help="finished run folders (with results.json and checkpoints)")
    parser.add_argument("--images", type=int, default=5120, help="training images the statistics are recomputed on "
                                                                 "(default 5120)")
    parser.add_argument("--checkpoint", default="last", choices=["last", "best"], help="weights scored (default last)")
    parser.add_argument("--threads", type=int, default=None, help="torch's and TensorFlow's threads (default theirs)")
    return parser


def _percent(logits, labels) -> float:
    from lab.reports.metrics import accuracy

    return round(accuracy(logits, labels) * 100, 2)


def _lightning(checkpoint: Path, run_dir: Path, precision: str):
    """(test logits of the network now, its BatchNorms) for a Lightning checkpoint, on the CPU."""
    import torch

    from lab.predict.classify import old_description
    from lightning_modules.batchnorm import tested_norms
    from lightning_modules.training import load_classifier, predict_logits

    model = load_classifier(checkpoint, old_description(run_dir, checkpoint, None))

    def context():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def logits(images):
        with context():
            return predict_logits(model, images, "cpu")

    return logits, tested_norms(model, checkpoint, torch.device("cpu"), context)


def _keras(checkpoint: Path, precision: str):
    from core.frameworks import keras
    from keras_models.batchnorm import tested_norms
    from keras_models.training import in_precision, predict_logits

    model = in_precision(keras.models.load_model(checkpoint, safe_mode=True), precision)
    return (lambda images: predict_logits(model, images)), tested_norms(model, checkpoint)


def score(run_dir: Path, images: int, which: str) -> dict:
    from datamodules.batching import recalibration_batches
    from lab.config.data import load_data
    from lab.config.settings import make_settings
    from lab.predict.classify import find_checkpoint
    from lab.records.results import load_results
    from lab.records.rundirs import load_settings

    results = load_results(run_dir)
    backend, settings = results["backend"], make_settings(load_settings(run_dir))
    splits = load_data(settings)  # the run's own splits
    checkpoint = find_checkpoint(run_dir, backend, which)
    logits, norms = (_lightning(checkpoint, run_dir, settings.precision) if backend == "lightning"
                     else _keras(checkpoint, settings.precision))
    row = {"run": str(run_dir), "backend": backend, "precision": settings.precision, "layers": norms.count,
           "as_trained": _percent(logits(splits.test.images), splits.test.labels)}
    train = splits.train.images
    norms.recompute([train[i] for i in recalibration_batches(len(train), images, settings.batch_size,
                                                             settings.seed)])  # never saved
    row["recomputed"] = _percent(logits(splits.test.images), splits.test.labels)
    return row


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.threads:
        import torch

        from core.frameworks import tf

        torch.set_num_threads(args.threads)
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    for run in args.runs:
        print(json.dumps(score(Path(run), args.images, args.checkpoint)))


if __name__ == "__main__":
    run_benchmark(main)
