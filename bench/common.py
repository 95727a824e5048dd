"""Shared pieces of the benchmarks: the reference loops the project is measured against, and how a
benchmark ends. The benchmarks are modules of the bench package, run from the repository root:

    python -m bench.speed --help
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn

from core.cli import run_command
from datamodules.batching import EVAL_BATCH_SIZE, epoch_order
from lab.config.flags import LabArgumentParser
from lab.specs.models import model_spec

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings

REPO = Path(__file__).resolve().parents[1]
# the CIFAR-10 JPEGs of the shared folder beside the checkout
SHARED_CIFAR = str(REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz")


class Baton:
    """Turns between the processes of a paired benchmark (run_paired): a way's process computes only while it
    holds the baton, so the ways' epochs alternate, each alone on the machine and seconds from the others', and
    a slow spell of a shared machine falls on all of them alike. Outside run_paired it does nothing."""

    def __init__(self):
        fds = os.environ.get(BATON_ENV)
        self.fds = tuple(int(fd) for fd in fds.split(",")) if fds else None

    def turn(self) -> None:
        """Give the baton back (ready for the next epoch) and wait to get it again. Call it where no clock runs."""
        if self.fds:
            os.write(self.fds[1], READY)
            if os.read(self.fds[0], 1) != GO:
                raise SystemExit("the paired benchmark ended")

    def end(self) -> None:
        """This process's work is done."""
        if self.fds:
            os.write(self.fds[1], ENDED)


BATON_ENV, READY, GO, ENDED = "BENCH_BATON", b"r", b"g", b"e"


def run_paired(children: dict[str, tuple[list[str], Path, Path, Path, dict]]) -> dict[str, dict]:
    """Start every way's process (argv, result, log, code, env: as fresh_process), let each set itself up, then
    hand a baton round them in order, one epoch each, until every one has ended: {way: its result}."""
    procs, pipes = {}, {}
    try:
        for way, (argv, _, log, code, env) in children.items():
            go_r, go_w = os.pipe()
            back_r, back_w = os.pipe()
            with log.open("a") as out:
                procs[way] = subprocess.Popen(
                    argv, cwd=code, stdout=out, stderr=subprocess.STDOUT, pass_fds=(go_r, back_w),
                    start_new_session=True,
                    env={**os.environ, "PYTHONPATH": str(code), **env, BATON_ENV: f"{go_r},{back_w}"})
            os.close(go_r)
            os.close(back_w)
            pipes[way] = go_w, back_r

        def answer(way: str) -> bytes:  # READY, or ENDED once its process has exited well
            said = os.read(pipes[way][1], 1)
            if said != READY and procs[way].wait():  # its exit (the teardown) overlaps no other's epoch
                log = children[way][2]
                raise SystemExit(f"{log.stem} failed (exit {procs[way].returncode}); its output: {log}")
            return said

        live = [way for way in children if answer(way) == READY]
        while live:
            for way in list(live):
                os.write(pipes[way][0], GO)
                if answer(way) != READY:
                    live.remove(way)
        return {way: json.loads(result.read_text()) for way, (_, result, *_) in children.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for fds in pipes.values():
            for fd in fds:
                os.close(fd)


def hand_written_torch(settings: ExperimentSettings, splits, epochs: int, device: str = "cpu",
                       compiled: bool = False) -> tuple[list[float], float]:
    """The fair hand-written PyTorch loop (fair_torch_loop): epoch times (train + validation) and test accuracy."""
    history, test_acc = fair_torch_loop(settings, splits, epochs, device, compiled)
    return [row["time/epoch_s"] for row in history], test_acc


def fair_torch_loop(settings: ExperimentSettings, splits, epochs: int, device: str = "cpu", compiled: bool = False,
                    baton: Baton | None = None) -> tuple[list[dict], float]:
    """A plain PyTorch loop over preloaded tensors that computes what both backends record each epoch: the
    training loss (the batches' mean losses weighted by their sizes) and accuracy, and the validation loss and
    accuracy; the sums stay on the device until the epoch ends. Returns the history (the rows RunRecord writes)
    and the test accuracy. compiled: the network under torch.compile, as --compile does; baton: turns taken before
    each epoch (run_paired)."""
    import torch
    from torch.nn import functional as F

    from lab.specs.optimizer import OptimizerSpec
    from lightning_modules.compiling import build_optimizer, compile_network
    from lightning_modules.components import build_network

    torch.manual_seed(settings.seed)
    net = build_network(model_spec(settings, splits.input_shape, splits.num_classes), splits.input_shape,
                        splits.mean, splits.std).to(device)
    if compiled:
        compile_network(net)
    opt = build_optimizer(OptimizerSpec.from_settings(settings), net.parameters())
    x, y = torch.from_numpy(splits.train.images).to(device), torch.from_numpy(splits.train.labels).to(device)
    history = []
    for epoch in range(epochs):
        if baton is not None:
            baton.turn()
        start = time.perf_counter()
        net.train()
        loss_sum, correct = torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device)
        order = torch.from_numpy(epoch_order(len(y), settings.seed, epoch, settings.batch_size)).to(device)
        for idx in order.split(settings.batch_size):
            logits = net(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y[idx]).sum()
        val_loss, val_acc = _torch_evaluate(net, splits.val, device)
        seen = len(order)
        history.append({"epoch": epoch + 1, "train/loss": loss_sum.item() / seen, "train/acc": correct.item() / seen,
                        "val/loss": val_loss, "val/acc": val_acc,
                        "time/epoch_s": time.perf_counter() - start})  # .item() synchronised the GPU
    return history, _torch_evaluate(net, splits.test, device)[1]


def _torch_evaluate(net, part, device) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a split, in evaluation batches."""
    import torch
    from torch.nn import functional as F

    net.eval()
    loss_sum, correct = torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device)
    with torch.no_grad():
        for i in range(0, len(part), EVAL_BATCH_SIZE):
            images = torch.from_numpy(part.images[i:i + EVAL_BATCH_SIZE]).to(device)
            labels = torch.from_numpy(part.labels[i:i + EVAL_BATCH_SIZE]).to(device)
            logits = net(images)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            correct += (logits.argmax(1) == labels).sum()
    return loss_sum.item() / len(part), correct.item() / len(part)


def plain_keras_fit(settings: ExperimentSettings, splits, epochs: int, baton: Baton | None = None) -> list[float]:
    """model.fit on float numpy arrays, as in the keras-io examples: epoch times (train + validation)."""
    from core.frameworks import keras
    from keras_models.compiling import compile_model
    from keras_models.components.network import build_network
    from lab.specs.optimizer import OptimizerSpec

    keras.utils.set_random_seed(settings.seed)
    spec = model_spec(settings, splits.input_shape, splits.num_classes)
    model = compile_model(build_network(spec, splits.input_shape, splits.mean, splits.std),
                          OptimizerSpec.from_settings(settings))
    times = EpochTimes(baton)
    model.fit(splits.train.images, splits.train.labels, batch_size=settings.batch_size, epochs=epochs,
              validation_data=(splits.val.images, splits.val.labels), callbacks=[times.keras()], verbose=0)
    return times.times


class EpochTimes:
    def __init__(self, baton: Baton | None = None):
        self.times: list[float] = []
        self.baton = baton or Baton()

    def keras(self):
        from core.frameworks import keras

        outer = self

        class _Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer.baton.turn()
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                outer.times.append(time.perf_counter() - self.start)

        return _Timer()


def steady(times: list[float]) -> float:
    """Median epoch time without the first (warm-up) epoch."""
    return statistics.median(times[1:] if len(times) > 1 else times)


def interleaved_rounds(rounds: int, groups: list[str], ways: dict, run: Callable, line: Callable) -> dict:
    """Every way of every group, `rounds` times, the ways in reverse order every other round, so that a slow or
    quiet spell of a shared machine falls on both: {group: {way: [run(group, ways[way]) of each round]}}.
    line(result) ends the line printed after each run."""
    results = {group: {way: [] for way in ways} for group in groups}
    for round_ in range(rounds):
        order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
        for group in groups:
            for way in order:
                result = run(group, ways[way])
                results[group][way].append(result)
                print(f"round {round_ + 1}: {group}: {way}: " + line(result), flush=True)
    return results


def fresh_process(argv: list[str], result: Path, log: Path, code: Path = REPO, env: dict | None = None) -> dict:
    """Run a benchmark's child (argv, writing its JSON result to `result`) in a new process from the project copy
    `code`, its output appended to `log`; its result, or the end of the benchmark when it fails."""
    with log.open("a") as out:
        done = subprocess.run(argv, cwd=code, stdout=out, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONPATH": str(code), **(env or {})})
    if done.returncode:
        raise SystemExit(f"{log.stem} failed (exit {done.returncode}); its output: {log}")
    return json.loads(result.read_text())


def thread_env(threads: int | None) -> dict[str, str]:
    """Environment variables that give a new process `threads` compute threads in PyTorch (OpenMP) and TensorFlow
    (its intra- and inter-op pools); none when threads is None. One thread each makes timings on a machine shared
    with other work far steadier: PyTorch's threads wait for each other at the end of every operator, so one
    descheduled thread stalls the other (bench/README.md, Several processes on the CPU)."""
    if threads is None:
        return {}
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}


def benchmark_parser(module: str, doc: str) -> LabArgumentParser:
    """A benchmark's parser: `python -m bench.<module>` in its usage, the docstring's first line as its
    description, and bad flags reported as every command of the project reports them (one line, exit code 2)."""
    return LabArgumentParser(prog=f"python -m bench.{module}", description=doc.splitlines()[0])


def run_benchmark(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> NoReturn:
    """Run main(argv) and exit as every command of the project does: a LabError is one line and exit code 2,
    Ctrl-C is 130; otherwise main's return value (None: 0)."""
    code, result = run_command(lambda: main(argv), "finished runs are kept; run the same command again to continue.")
    sys.exit(code or result or 0)


def add_cifar_epoch_flags(parser, rounds: int) -> None:
    """The flags of a benchmark that times epochs of cifar_cnn on the first CIFAR-10 training images."""
    parser.add_argument("--data-dir", default=SHARED_CIFAR,
                        help=f"the CIFAR-10 image folder or tar (default {SHARED_CIFAR})")
    parser.add_argument("--width", type=int, default=16, help="cifar_cnn width (default 16)")
    parser.add_argument("--depth", type=int, default=3, help="cifar_cnn depth (default 3)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per training batch (default 128)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up (default 3)")
    parser.add_argument("--rounds", type=int, default=rounds, help=f"runs of each way (default {rounds})")
    parser.add_argument("--train-images", type=int, default=9000, help="training images per epoch (default 9000)")
