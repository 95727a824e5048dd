"""How much of a finished Lightning run's test accuracy its batch norm's running statistics cost: the test set
scored as trained, then after the running mean and variance are computed afresh, as a plain average over training
images (a seeded random sample: the split is stored class by class) in training mode, from the final weights
(the weights untouched).

    python -m bench.bn_statistics RUN_DIR [RUN_DIR ...] [--images 5120] [--threads 1]

The running statistics are an exponential average (Keras' momentum 0.99, PyTorch's 0.01) over the last hundred or so
steps, so they lag the weights; how far depends on the steps an epoch. Each line: the run, its precision, the test
accuracy as trained, and with the statistics recomputed in float32 (and under bf16 autocast for a bf16-mixed run).
Lightning runs only: a Keras run is refused in one line.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench.common import benchmark_parser, run_benchmark


def _parser():
    parser = benchmark_parser("bn_statistics", __doc__)
    parser.add_argument("runs", nargs="+", help="finished Lightning run folders (with results.json and checkpoints)")
    parser.add_argument("--images", type=int, default=5120, help="training images the statistics are recomputed on "
                                                                 "(default 5120)")
    parser.add_argument("--checkpoint", default="last", choices=["last", "best"], help="weights scored (default last)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    return parser


def recompute(model, images, batch: int, bf16: bool) -> None:
    """Every batch norm's running mean and variance as the plain average over `images`, in training mode."""
    import torch

    kinds = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    norms = [m for m in model.modules() if isinstance(m, kinds)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average
    model.train()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(images), batch):
            model(images[start:start + batch])
    model.eval()


def sample(count: int, images: int):
    """`images` indices of the training split drawn at random (seeded): the split is stored class by class, so its
    first images would be a few classes only."""
    import numpy as np

    return np.sort(np.random.default_rng(0).permutation(count)[:images])


def accuracy(model, images, labels) -> float:
    import torch

    with torch.inference_mode():
        logits = torch.cat([model(images[i:i + 1000]).float() for i in range(0, len(images), 1000)])
    return round(float((logits.argmax(1).numpy() == labels).mean() * 100), 2)


def score(run_dir, images: int, which: str) -> dict:
    import numpy as np
    import torch

    from core.errors import LabError
    from lab.config.data import load_data
    from lab.config.settings import make_settings
    from lab.predict.classify import find_checkpoint, old_description
    from lab.records.results import load_results
    from lab.records.rundirs import load_settings
    from lightning_modules.training import load_classifier

    results = load_results(run_dir)
    if results["backend"] != "lightning":
        raise LabError(f"{run_dir} is a {results['backend']} run; bench.bn_statistics reads Lightning runs only.")
    hp = results["hyperparameters"]
    splits = load_data(make_settings(load_settings(run_dir)))  # the run's own splits
    checkpoint = find_checkpoint(run_dir, "lightning", which)
    model = load_classifier(checkpoint, old_description(run_dir, checkpoint, None))
    test_x, test_y = torch.from_numpy(np.asarray(splits.test.images)), np.asarray(splits.test.labels)
    train_x = torch.from_numpy(np.asarray(splits.train.images)[sample(len(splits.train.labels), images)])
    row = {"run": str(run_dir), "precision": hp.get("precision", "32"), "as_trained": accuracy(model, test_x, test_y)}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for label, bf16 in (("recomputed_fp32", False), ("recomputed_bf16", True)):
        if bf16 and row["precision"] != "bf16-mixed":
            continue
        model.load_state_dict(state)
        recompute(model, train_x, int(hp.get("batch_size") or 128), bf16)
        row[label] = accuracy(model, test_x, test_y)
    return row


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    for run in args.runs:
        print(json.dumps(score(Path(run), args.images, args.checkpoint)))


if __name__ == "__main__":
    run_benchmark(main)
