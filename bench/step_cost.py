"""What Lightning's step costs against the fair hand-written loop's, and what each speed departure of
lightning_modules.speedups saves, in one process, one thread.

    python -m bench.step_cost [--rounds 4] [--train-images 16000] [--threads 1] [--model mlp] [--per-call-only]

First each departure alone (and those measured and dropped): CPU microseconds per call, stock and with it, times
the calls a step makes, the table of lightning_modules.speedups. Then steps 50 to 450 of one epoch of first_cnn
(or --model), batch 32, Fashion-MNIST, per way, in interleaved rounds; each step timed in wall time and in the
main thread's CPU time. With one thread, PyTorch computes on the main thread, so its CPU time is the step's work,
and hardly moves when other processes share the machine, while wall time does. The ways:

- the fair hand loop's step (forward, loss, backward, Adam, and the metric sums);
- the same step with torchmetrics' MeanMetric and MulticlassAccuracy updates instead of the sums;
- the same step where torch looks for a GPU at every Adam step, as it does in any process that imported
  Lightning on a machine without one, unless CUDA_VISIBLE_DEVICES is set (the project sets it empty there);
- the project's module in a bare Lightning Trainer (no callbacks, logger, checkpoints or progress bar), with
  its speed departures and stock (`speedups.stock()`, the GPU probe on);
- the same in the project's Trainer (its recorder, checkpoints, logger, profile clock).
"""
from __future__ import annotations

import contextlib
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from bench.common import benchmark_parser, interleaved_rounds, run_benchmark
from lab.specs.models import MODELS

if TYPE_CHECKING:
    from datamodules.base import DataSplits
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


def hand_steps(settings: ExperimentSettings, splits: DataSplits, torchmetrics: bool) -> dict:
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


def trainer_steps(settings: ExperimentSettings, splits: DataSplits, project_trainer: bool, stock: bool) -> dict:
    """Steps of the project's module in a bare Trainer or the project's; stock: every departure of
    lightning_modules.speedups off (the GPU probe is the way's, see `way`)."""
    import pytorch_lightning as pl

    from datamodules.torch_data import ArraysDataModule
    from lab.records.recording import RunRecord
    from lightning_modules import speedups, training

    clock = StepTimes()

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            clock.mark(batch_idx)

    with speedups.stock() if stock else contextlib.nullcontext(), tempfile.TemporaryDirectory() as tmp:
        pl.seed_everything(settings.seed, verbose=False)
        module = training.build_model(settings, splits)
        data = ArraysDataModule(splits, settings.batch_size, settings.seed)
        if project_trainer:
            from callbacks.lightning_profile import StepClock
            from lab.specs.phases import plan_phases

            args = training._trainer_args(settings, training.plan_devices(settings, 0), Path(tmp),
                                          RunRecord(tmp, len(splits.train), persist=False), plan_phases(settings, 0),
                                          (StepClock(), Clock()))
        else:
            args = dict(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[Clock()])
        trainer = pl.Trainer(**{**args, "accelerator": "cpu", "devices": 1, "limit_train_batches": LAST + 2,
                                "num_sanity_val_steps": 0})
        trainer.fit(module, datamodule=data)
    return clock.result()


def way(run, probe: bool = False, **kwargs):
    def call(settings: ExperimentSettings, splits: DataSplits):
        with gpu_probe(probe):
            return run(settings, splits, **kwargs)

    return call


WAYS = {
    "fair hand loop": way(hand_steps, torchmetrics=False),
    "hand loop, torchmetrics updates": way(hand_steps, torchmetrics=True),
    "hand loop, GPU probe every step": way(hand_steps, probe=True, torchmetrics=False),
    "module, bare Trainer": way(trainer_steps, project_trainer=False, stock=False),
    "module stock, bare Trainer": way(trainer_steps, probe=True, project_trainer=False, stock=True),
    "module, project Trainer": way(trainer_steps, project_trainer=True, stock=False),
    "module stock, project Trainer": way(trainer_steps, probe=True, project_trainer=True, stock=True),
}


def per_call_pairs(num_classes: int) -> dict[str, tuple[Callable, Callable, int]]:
    """What each speed departure (kept in lightning_modules.speedups, or dropped) saves: (stock call, call with
    the departure, calls a training step of the project's Trainer makes)."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.profilers import PassThroughProfiler

    from datamodules.torch_data import ArraysDataModule, Part
    from lightning_modules import speedups
    from lightning_modules.classifier import ImageClassifier
    from lightning_modules.epoch_metrics import EpochMetrics

    logits, labels, loss = torch.randn(32, num_classes), torch.randint(0, num_classes, (32,)), torch.tensor(2.3)
    module = ImageClassifier(torch.nn.Linear(2, num_classes))
    stock = ImageClassifier(torch.nn.Linear(2, num_classes))
    stock.__class__ = type("Stock", (ImageClassifier,), {"__setattr__": pl.LightningModule.__setattr__})
    net = torch.nn.Linear(8, 8)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 8)).sum().backward()

    class NoProfiler(PassThroughProfiler):  # one shared null context for every profiler call (dropped)
        def profile(self, action_name: str):
            return null

    null = contextlib.nullcontext()

    class CachedKey(ModelCheckpoint):  # the state_key computed once (dropped)
        state_key = functools.cached_property(ModelCheckpoint.state_key.fget)

    checkpoints = [kind("/tmp", monitor="val/acc", mode="max") for kind in (ModelCheckpoint, CachedKey)]
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)

    metrics = EpochMetrics()
    plain_counters = EpochMetrics()  # the metric's two counters as plain attributes (dropped)
    plain_counters.__class__ = type("Plain", (speedups.PlainAttributes, EpochMetrics),
                                    {"_plain": ("_computed", "_update_count")})
    batch, cpu = (torch.zeros(32, 28, 28, 1, dtype=torch.uint8), labels, Part(0, 32)), torch.device("cpu")
    data = ArraysDataModule(None, 32)

    def pass_through():  # a batch already on the device returned as it is (dropped)
        return batch if all(t.device == cpu for t in batch[:2]) else data.transfer_batch_to_device(batch, cpu, 0)

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

    return {
        "PlainAttributes: module._current_fx_name = ... without Module.__setattr__": (
            lambda: setattr(stock, "_current_fx_name", "training_step"),
            lambda: setattr(module, "_current_fx_name", "training_step"), 44),
        "(dropped) NoProfiler: one of Lightning's profiler calls, a shared null context": (
            profiled(PassThroughProfiler()), profiled(NoProfiler()), 47),
        "stop_probing_for_gpus: an Adam step of a tiny net without the GPU probe": (probe(True), probe(False), 1),
        "(dropped) a checkpoint's state_key computed once, read at every hook call": (
            lambda: checkpoints[0].state_key, lambda: checkpoints[1].state_key, 12),
        "(dropped) ModelCheckpoint's per-step save check skipped": (
            lambda: checkpoints[0].on_train_batch_end(trainer, module, None, batch, 0), lambda: None, 2),
        "(dropped) the metric's two counters as plain attributes, in its update": (
            lambda: metrics.update(loss, logits, labels), lambda: plain_counters.update(loss, logits, labels), 1),
        "(dropped) a batch already on the device passed through transfer_batch_to_device": (
            lambda: data.transfer_batch_to_device(batch, cpu, 0), pass_through, 1),
        "(fairness, kept) EpochMetrics' update against MeanMetric + MulticlassAccuracy": (
            _torchmetrics_update(num_classes, loss, logits, labels), lambda: metrics.update(loss, logits, labels), 1),
    }


def _torchmetrics_update(num_classes: int, loss, logits, labels):
    mean, accuracy = _old_metrics(num_classes)
    return lambda: (mean.update(loss, 32), accuracy.update(logits, labels))


def tiny_step_costs(rounds: int, steps: int = 400) -> None:
    """The departures that act inside Lightning's loop, each alone: the CPU time of a steady step of a one-layer
    module in a bare Trainer, stock and with the departure, median of rounds: log_step (no self.log of the step's
    loss) and (dropped) the progress bar redrawn at most every 0.2 s (run it in a terminal: rich draws nothing
    elsewhere)."""
    import pytorch_lightning as pl
    import torch
    from torch.nn import functional as F

    from callbacks.lightning_progress import RunningMetricsBar
    from lightning_modules import speedups

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.times = torch.nn.Linear(8, 4), []

        def training_step(self, batch, batch_idx):
            self.times.append(time.thread_time())
            loss = F.cross_entropy(self.net(batch[0]), batch[1])
            speedups.log_step(self, loss.detach())
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    class Batches:  # one iterable of batches (a list would be read as a list of dataloaders)
        batch = torch.randn(4, 8), torch.randint(0, 4, (4,))

        def __len__(self):
            return steps

        def __iter__(self):
            return iter([self.batch] * steps)

    batches = Batches()

    class ThrottledBar(RunningMetricsBar):  # redrawn at most every 0.2 s, as tqdm and Keras' progbar are (dropped)
        def __init__(self):
            super().__init__()
            self.last_draw = 0.0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            now = time.monotonic()
            if batch_idx + 1 == self.total_train_batches or now - self.last_draw >= 0.2:
                self.last_draw = now
                super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def step_ms(stock: bool, bar: bool) -> float:
        module = Tiny()
        bars = [RunningMetricsBar() if stock else ThrottledBar()] if bar else []
        with speedups.stock() if stock and not bar else contextlib.nullcontext():
            pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=bar,
                       callbacks=bars, enable_model_summary=False, accelerator="cpu", devices=1).fit(module, batches)
        return statistics.median(1000 * (b - a) for a, b in zip(module.times[50:], module.times[51:]))

    for what, bar in (("log_step: a steady step with self.log of its loss and without", False),
                      ("(dropped) a steady step with the progress bar redrawn every step and throttled", True)):
        times = [(step_ms(True, bar), step_ms(False, bar)) for _ in range(rounds)]
        before, after = statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)
        print(f"  {what}: {before * 1000:.2f} -> {after * 1000:.2f} us x 1 = {before - after:.3f} ms")


def per_call(num_classes: int, rounds: int, calls: int = 2000) -> None:
    """Each departure alone: CPU microseconds per call, stock and with it, median of rounds; ms saved a step."""
    import timeit

    print("each departure alone, CPU microseconds per call (median of rounds), and ms saved a step:")
    for what, (stock, departed, per_step) in per_call_pairs(num_classes).items():
        times = [[timeit.Timer(f, timer=time.thread_time).timeit(calls) / calls * 1e6 for f in (stock, departed)]
                 for _ in range(rounds)]
        before, after = statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)
        print(f"  {what}: {before:.2f} -> {after:.2f} us x {per_step} = {(before - after) * per_step / 1000:.3f} ms")
    tiny_step_costs(rounds)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("step_cost", __doc__)
    parser.add_argument("--dataset", default="fashion_mnist", help="dataset (default fashion_mnist)")
    parser.add_argument("--data-dir", default=None, help="where the dataset files are")
    parser.add_argument("--model", default="first_cnn", choices=MODELS,
                        help="model (default first_cnn; mlp: little compute, so the loop's own cost shows)")
    parser.add_argument("--train-images", type=int, default=16000, help="training images (default 16000)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds over the ways (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch's threads (default 1)")
    parser.add_argument("--per-call-only", action="store_true", help="only the departures' costs per call")
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
    per_call(splits.num_classes, args.rounds)
    if args.per_call_only:
        return
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
