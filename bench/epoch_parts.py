"""Where a Lightning epoch's time goes beyond its steady steps: the project's Lightning path, timed by parts.

    python -m bench.epoch_parts [--dataset fashion_mnist] [--epochs 3] [--profiler simple] [--cprofile 25]

For each epoch (as RunRecord times it, training start to validation end): the training steps (batch start to
batch end, Lightning's hooks included), the gaps between them (fetching the next batch and the hooks around
it), the time from the epoch's start to its first batch and from its last batch to the validation's start,
the validation, the time from validation's end to the epoch's end, and the time Python's garbage collector
took within the epoch. Steps 50 to 450 give the steady step, and "steady steps x steps" what the epoch would
take with every step steady. --profiler simple adds Lightning's SimpleProfiler report to the Trainer;
--cprofile N prints the N functions of the last epoch with the most cumulative time.
"""
from __future__ import annotations

import cProfile
import gc
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import benchmark_parser, run_benchmark


def parts_clock():
    import pytorch_lightning as pl

    from callbacks.lightning_recorder import synchronize

    class PartsClock(pl.Callback):
        """Clock reads at Lightning's hooks, per epoch; gc time from Python's gc callbacks."""

        def __init__(self):
            self.epochs: list[dict] = []
            self._gc_start = 0.0
            gc.callbacks.append(self._gc)

        def _gc(self, phase, info):
            if phase == "start":
                self._gc_start = time.perf_counter()
            elif self.epochs:
                self.epochs[-1]["gc_s"] += time.perf_counter() - self._gc_start

        def _now(self, trainer) -> float:
            synchronize(trainer)
            return time.perf_counter()

        def on_train_epoch_start(self, trainer, pl_module):
            self.epochs.append({"start": self._now(trainer), "batch_start": [], "batch_end": [], "gc_s": 0.0})

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.epochs[-1]["batch_start"].append(self._now(trainer))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.epochs[-1]["batch_end"].append(self._now(trainer))

        def on_validation_start(self, trainer, pl_module):
            self.epochs[-1]["val_start"] = self._now(trainer)

        def on_validation_end(self, trainer, pl_module):
            self.epochs[-1]["val_end"] = self._now(trainer)

        def on_train_epoch_end(self, trainer, pl_module):
            self.epochs[-1]["end"] = self._now(trainer)

    return PartsClock()


def summarize(epoch: dict) -> dict:
    starts, ends = epoch["batch_start"], epoch["batch_end"]
    steps = [e - s for s, e in zip(starts, ends)]
    gaps = [s - e for e, s in zip(ends, starts[1:])]
    steady = [b - a for a, b in zip(starts[50:450], starts[51:451])]  # batch start to batch start
    return {"epoch_s": epoch["end"] - epoch["start"], "steps": len(steps), "steps_s": sum(steps),
            "gaps_s": sum(gaps), "to_first_batch_s": starts[0] - epoch["start"],
            "last_batch_to_val_s": epoch["val_start"] - ends[-1], "val_s": epoch["val_end"] - epoch["val_start"],
            "val_to_end_s": epoch["end"] - epoch["val_end"], "gc_s": epoch["gc_s"],
            "steady_step_ms": 1000 * statistics.median(steady) if steady else float("nan")}


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("epoch_parts", __doc__)
    parser.add_argument("--dataset", default="fashion_mnist", help="dataset (default fashion_mnist)")
    parser.add_argument("--data-dir", default=None, help="where the dataset files are")
    parser.add_argument("--model", default="first_cnn", help="model (default first_cnn)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--train-images", type=int, default=None, help="training images (default: all)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (default 3)")
    parser.add_argument("--profiler", default=None, help="Lightning's profiler for the Trainer, e.g. simple")
    parser.add_argument("--cprofile", type=int, default=0, help="print the N slowest functions of the last epoch")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch's compute threads (default: its own)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from core import frameworks

    frameworks.without_tensorflow()  # as train_lightning.py
    from datamodules import load_splits
    from lab.config.settings import make_settings
    from lab.run.backend import get_backend
    from lightning_modules import training

    settings = make_settings({"dataset": args.dataset, "data_dir": args.data_dir, "model": args.model,
                              "epochs": args.epochs, "batch_size": args.batch_size,
                              "train_images": args.train_images})
    splits = load_splits(settings.dataset, settings.data_dir, settings.seed, settings.val_fraction,
                         train_images=settings.train_images)
    if args.profiler:
        trainer_args = training._trainer_args
        training._trainer_args = lambda *a, **k: {**trainer_args(*a, **k), "profiler": args.profiler}
    clock = parts_clock()
    extra = (clock,) + ((last_epoch_cprofile(args.epochs, args.cprofile),) if args.cprofile else ())
    with tempfile.TemporaryDirectory() as tmp:
        training.train(settings, splits, Path(tmp), get_backend("lightning").plan_devices(settings), callbacks=extra)
    print(f"\n{settings.model}, batch {settings.batch_size}, {settings.dataset} ({len(splits.train)} training "
          "images), seconds per epoch part:")
    for index, epoch in enumerate(clock.epochs, 1):
        row = summarize(epoch)
        print(f"  epoch {index}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                               for k, v in row.items())
              + f"; steady steps x steps {row['steady_step_ms'] * row['steps'] / 1000:.3f}")


def last_epoch_cprofile(epochs: int, top: int):
    import pytorch_lightning as pl

    class LastEpoch(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == epochs - 1:
                self.profile = cProfile.Profile()
                self.profile.enable()

        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == epochs - 1:
                self.profile.disable()
                pstats.Stats(self.profile).sort_stats("cumulative").print_stats(top)

    return LastEpoch()


if __name__ == "__main__":
    run_benchmark(main)
