"""The cost of a steady Lightning training step against the fair hand-written loop's, in one process, one thread.

    python -m bench.step_cost [--rounds 4] [--train-images 16000] [--threads 1] [--model mlp]

Steps 50 to 450 of one epoch of first_cnn (or --model), batch 32, Fashion-MNIST, per way, in interleaved
rounds; each step timed in wall time and in the main thread's CPU time. With one thread, PyTorch computes on
the main thread, so its CPU time is the step's work, and hardly moves when other processes share the machine,
while wall time does. The ways:

- the fair hand loop's step (forward, loss, backward, Adam, and the metric sums);
- the same step with torchmetrics' MeanMetric and MulticlassAccuracy updates (the module's metrics before);
- the same step where torch looks for a GPU at every Adam step, as it does in any process that imported
  Lightning on a machine without one, unless CUDA_VISIBLE_DEVICES is set (the project sets it empty there);
- the project's module in a bare Lightning Trainer (no callbacks, logger, checkpoints or progress bar), and the
  module as it was before (two torchmetrics updates and a self.log every 25 steps, torch's __setattr__ for
  Lightning's hook names, the GPU probe at every step, Lightning's default batch transfer) in the same bare
  Trainer;
- the project's module in the project's Trainer (its recorder, checkpoints, progress bar, logger, profile
  clock), and the module as it was before in it, with Lightning's ModelCheckpoint and default profiler as before.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import benchmark_parser, interleaved_rounds, run_benchmark
from lab.specs.models import MODELS

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings

FIRST, LAST = 50, 450


class StepTimes:
    """Wall and CPU clock at the start of every step from FIRST to LAST: per-step medians in ms."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def mark(self, index: int) -> None:
        if FIRST <= index <= LAST:
            self.wall.append(time.perf_counter())
            self.cpu.append(time.thread_time())

    def result(self) -> dict:
        per = {k: [1000 * (b - a) for a, b in zip(v, v[1:])] for k, v in (("wall", self.wall), ("cpu", self.cpu))}
        return {k: statistics.median(v) for k, v in per.items()}


@contextlib.contextmanager
def gpu_probe(on: bool):
    """Torch's search for a GPU at every Adam step on (CUDA_VISIBLE_DEVICES unset) or off (set empty)."""
    saved = os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    if not on:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        yield
    finally:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        if saved is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


def hand_steps(settings: ExperimentSettings, splits, torchmetrics: bool) -> dict:
    import torch
    from torch.nn import functional as F

    from datamodules.batching import epoch_order
    from lab.specs.models import model_spec
    from lightning_modules.components import build_network

    torch.manual_seed(settings.seed)
    net = build_network(model_spec(settings, splits.input_shape, splits.num_classes), splits.input_shape,
                        splits.mean, splits.std)
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr, eps=1e-7)
    x, y = torch.from_numpy(splits.train.images), torch.from_numpy(splits.train.labels)
    loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    mean, accuracy = _old_metrics(splits.num_classes)
    clock = StepTimes()
    for index, idx in enumerate(torch.from_numpy(epoch_order(len(y), 0, 0, 32)).split(32)):
        if index > LAST:
            break
        clock.mark(index)
        logits = net(x[idx])
        loss = F.cross_entropy(logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if torchmetrics:
            mean.update(loss.detach(), len(idx))
            accuracy.update(logits.detach(), y[idx])
        else:
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y[idx]).sum()
    return clock.result()


def _old_metrics(num_classes: int):
    from torchmetrics import MeanMetric
    from torchmetrics.classification import MulticlassAccuracy

    return MeanMetric(nan_strategy="disable"), MulticlassAccuracy(num_classes, average="micro", validate_args=False)


def old_module(module):
    """The module as it was before: its training metrics in MeanMetric and MulticlassAccuracy, and torch's
    Module.__setattr__ for every attribute."""
    import pytorch_lightning as pl
    from torch.nn import functional as F

    mean, accuracy = _old_metrics(module.hparams.num_classes)
    module.__class__ = type("Before", (type(module),), {"__setattr__": pl.LightningModule.__setattr__})

    def training_step(batch, batch_idx):
        images, labels, *_ = batch
        logits = module(images)
        loss = F.cross_entropy(logits, labels)
        mean.update(loss.detach(), len(labels))
        accuracy.update(logits.detach(), labels)
        if batch_idx % 25 == 0:
            module.log("loss", loss.detach(), prog_bar=True, logger=False)
        return loss

    module.training_step = training_step
    return module


def trainer_steps(settings: ExperimentSettings, splits, project_trainer: bool, before: bool) -> dict:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint

    from callbacks.lightning_checkpoint import EpochCheckpoint
    from datamodules.torch_data import ArraysDataModule
    from lab.records.recording import RunRecord
    from lightning_modules import training

    clock = StepTimes()

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            clock.mark(batch_idx)

    pl.seed_everything(settings.seed, verbose=False)
    module = training.build_module(settings, splits)
    data = ArraysDataModule(splits, settings.batch_size, settings.seed)
    if before:
        old_module(module)
        data.__class__ = type("Before", (ArraysDataModule,),
                              {"transfer_batch_to_device": pl.LightningDataModule.transfer_batch_to_device})
    with tempfile.TemporaryDirectory() as tmp:
        if project_trainer:
            from callbacks.lightning_profile import StepClock
            from lab.specs.phases import plan_phases

            args = training._trainer_args(settings, training.plan_devices(settings, 0), Path(tmp),
                                          RunRecord(tmp, len(splits.train), persist=False), plan_phases(settings, 0),
                                          (StepClock(), Clock()))
            if before:  # Lightning's ModelCheckpoint and default profiler, as the project used them
                for callback in args["callbacks"]:
                    if isinstance(callback, EpochCheckpoint):
                        callback.__class__ = ModelCheckpoint
                args["profiler"] = None
        else:
            args = dict(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Clock()])
        trainer = pl.Trainer(**{**args, "accelerator": "cpu", "devices": 1, "limit_train_batches": LAST + 2,
                                "num_sanity_val_steps": 0})
        trainer.fit(module, datamodule=data)
    return clock.result()


def way(run, probe: bool = False, **kwargs):
    def call(settings: ExperimentSettings, splits):
        with gpu_probe(probe):
            return run(settings, splits, **kwargs)

    return call


WAYS = {
    "fair hand loop": way(hand_steps, torchmetrics=False),
    "hand loop, torchmetrics updates": way(hand_steps, torchmetrics=True),
    "hand loop, GPU probe every step": way(hand_steps, probe=True, torchmetrics=False),
    "module, bare Trainer": way(trainer_steps, project_trainer=False, before=False),
    "module before, bare Trainer": way(trainer_steps, probe=True, project_trainer=False, before=True),
    "module, project Trainer": way(trainer_steps, project_trainer=True, before=False),
    "module before, project Trainer": way(trainer_steps, probe=True, project_trainer=True, before=True),
}


def micro(num_classes: int, rounds: int, calls: int = 2000) -> None:
    """Each change of the leaner step alone: CPU microseconds per call before and after, median of rounds."""
    import timeit

    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.profilers import PassThroughProfiler
    from torchmetrics import Metric

    from callbacks.lightning_checkpoint import EpochCheckpoint
    from datamodules.torch_data import ArraysDataModule, Part
    from lightning_modules.classifier import EpochMetrics, ImageClassifier
    from lightning_modules.training import NoProfiler

    logits, labels, loss = torch.randn(32, num_classes), torch.randint(0, num_classes, (32,)), torch.tensor(2.3)
    mean, accuracy = _old_metrics(num_classes)
    metrics = EpochMetrics()
    module = ImageClassifier(torch.nn.Linear(2, num_classes), num_classes)
    before = ImageClassifier(torch.nn.Linear(2, num_classes), num_classes)
    before.__class__ = type("Before", (ImageClassifier,), {"__setattr__": pl.LightningModule.__setattr__})
    checkpoints = [kind("/tmp", monitor="val/acc", mode="max") for kind in (ModelCheckpoint, EpochCheckpoint)]
    net = torch.nn.Linear(8, 8)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 8)).sum().backward()

    metrics_before = EpochMetrics()
    metrics_before.__class__ = type("Before", (EpochMetrics,), {"__setattr__": Metric.__setattr__})
    batch, cpu = (torch.zeros(32, 28, 28, 1, dtype=torch.uint8), labels, Part(0, 32)), torch.device("cpu")
    data = ArraysDataModule(None, 32)
    profilers = PassThroughProfiler(), NoProfiler()

    def profiled(profiler):
        def call():
            with profiler.profile("[LightningModule]ImageClassifier.on_train_batch_start"):
                pass
        return call

    def probe(on: bool):
        def step():
            with gpu_probe(on):
                optimizer.step()
        return step

    pairs = {
        "training metrics update (MeanMetric + MulticlassAccuracy -> EpochMetrics)": (
            lambda: (mean.update(loss, 32), accuracy.update(logits, labels)),
            lambda: metrics.update(loss, logits, labels)),
        "module._current_fx_name = ... (Module.__setattr__ -> the fast path)": (
            lambda: setattr(before, "_current_fx_name", "training_step"),
            lambda: setattr(module, "_current_fx_name", "training_step")),
        "Adam step of a tiny net (GPU probe -> CUDA_VISIBLE_DEVICES empty)": (probe(True), probe(False)),
        "a checkpoint callback's state_key, read for every hook call (ModelCheckpoint -> EpochCheckpoint)": (
            lambda: checkpoints[0].state_key, lambda: checkpoints[1].state_key),
        "the training metrics update's wrapper (Metric.__setattr__ -> plain attributes for its two counters)": (
            lambda: metrics_before.update(loss, logits, labels), lambda: metrics.update(loss, logits, labels)),
        "a batch already on the device, to the device (Lightning's default -> the data module's pass-through)": (
            lambda: pl.LightningDataModule.transfer_batch_to_device(data, batch, cpu, 0),
            lambda: data.transfer_batch_to_device(batch, cpu, 0)),
        "one of Lightning's profiler calls (PassThroughProfiler -> NoProfiler)": (
            profiled(profilers[0]), profiled(profilers[1])),
    }
    print("each change alone, CPU microseconds per call (median of rounds):")
    for what, (old, new) in pairs.items():
        times = [[timeit.Timer(f, timer=time.thread_time).timeit(calls) / calls * 1e6 for f in (old, new)]
                 for _ in range(rounds)]
        print(f"  {what}: {statistics.median(t[0] for t in times):.1f} -> {statistics.median(t[1] for t in times):.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("step_cost", __doc__)
    parser.add_argument("--dataset", default="fashion_mnist", help="dataset (default fashion_mnist)")
    parser.add_argument("--data-dir", default=None, help="where the dataset files are")
    parser.add_argument("--model", default="first_cnn", choices=MODELS,
                        help="model (default first_cnn; mlp: little compute, so the loop's own cost shows)")
    parser.add_argument("--train-images", type=int, default=16000, help="training images (default 16000)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds over the ways (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch's threads (default 1)")
    args = parser.parse_args(argv)

    from core import frameworks

    frameworks.without_tensorflow()
    import pytorch_lightning  # noqa: F401  (it sets PYTORCH_NVML_BASED_CUDA_CHECK=1: the process the ways run in)
    import torch

    from datamodules import load_splits
    from lab.config.settings import make_settings

    torch.set_num_threads(args.threads)
    settings = make_settings({"dataset": args.dataset, "data_dir": args.data_dir, "model": args.model, "epochs": 1,
                              "train_images": args.train_images, "profile": False})
    splits = load_splits(settings.dataset, settings.data_dir, settings.seed, settings.val_fraction,
                         train_images=settings.train_images)
    micro(splits.num_classes, args.rounds)
    results = interleaved_rounds(args.rounds, ["steps"], WAYS, lambda _, way: way(settings, splits),
                                 lambda r: f"wall {r['wall']:.2f} ms, cpu {r['cpu']:.2f} ms")["steps"]
    print(f"\n{settings.model}, batch 32, {settings.dataset}: median step {FIRST}-{LAST}, {args.threads} thread(s), "
          f"{args.rounds} rounds (median of rounds), and against the fair hand loop within each round")
    hand = results["fair hand loop"]
    for way, rounds in results.items():
        cells = []
        for clock in ("wall", "cpu"):
            ms = statistics.median(r[clock] for r in rounds)
            ratio = statistics.median(r[clock] / h[clock] for r, h in zip(rounds, hand))
            cells.append(f"{clock} {ms:6.2f} ms ({ratio:.2f}x)")
        print(f"  {way:34s} " + "   ".join(cells))


if __name__ == "__main__":
    run_benchmark(main)
