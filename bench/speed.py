"""Speed: epochs of one model (default first_cnn, batch 32, Fashion-MNIST) in several ways, each way a fresh process
of its own, as a user runs it, in interleaved rounds.

    python -m bench.speed [--rounds 5] [--epochs 3] [--compile] [--gpus 1] [--model cifar_cnn --batch-size 128 ...]

The ways: the fair hand-written PyTorch loop (bench.common.fair_torch_loop: the training loss and accuracy and the
validation metrics both backends record, over preloaded tensors); a bare Lightning Trainer (the project's module
and batches, no callbacks, logger, checkpoints or progress bar: Lightning's own loop); the project's Lightning
path; plain Keras model.fit on arrays; the project's Keras path. --compile adds the hand loop under
torch.compile and both project paths with --compile; --bf16 both project paths with --precision bf16-mixed. Each
round runs every way once, in reverse order every other round; the first epoch of each run is warm-up (and
compiling) and left out.

--paired starts the ways of a round together and lets them take turns, one epoch each (bench.common.Baton),
so that their epochs alternate seconds apart instead of runs minutes apart.

Prints each way's median epoch (train + validation) per round, the project paths' per-step profiles
(results.json "profile"), and the ratios, each taken within a round and then the median over the rounds:
project Lightning / fair hand loop (target <= 1.10x), project Keras / plain Keras fit (target <= 1.02x), ...
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.common import (
    REPO,
    Baton,
    benchmark_parser,
    fair_torch_loop,
    fresh_process,
    interleaved_rounds,
    plain_keras_fit,
    run_benchmark,
    run_paired,
    steady,
    thread_env,
)
from core.io import write_json_atomic

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings

EAGER = {"hand": "fair hand-written PyTorch loop", "bare-lightning": "bare Lightning Trainer",
         "lightning": "project Lightning", "keras-fit": "plain Keras fit", "keras": "project Keras"}
COMPILED = {"hand-compiled": "fair hand loop, torch.compile", "lightning-compiled": "project Lightning --compile",
            "keras-compiled": "project Keras --compile"}
MIXED = {"lightning-bf16": "project Lightning bf16-mixed", "keras-bf16": "project Keras bf16-mixed"}
BASELINE = "@baseline"  # a way run from --baseline's copy of the project (an earlier commit)
TORCH_ONLY = ("hand", "hand-compiled", "bare-lightning", "lightning", "lightning-compiled", "lightning-bf16")
PROJECT = ("bare-lightning", "lightning", "keras", "lightning-compiled", "keras-compiled", "lightning-bf16",
           "keras-bf16")
# (numerator, denominator, what it says)
RATIOS = (("lightning", "hand", "project Lightning / fair hand loop (target <= 1.10x)"),
          ("bare-lightning", "hand", "bare Lightning Trainer / fair hand loop (Lightning's own loop)"),
          ("lightning", "bare-lightning", "project Lightning / bare Lightning Trainer (what the project adds)"),
          ("keras", "keras-fit", "project Keras / plain Keras fit (target <= 1.02x)"),
          ("keras", "lightning", "project Keras / project Lightning"),
          ("lightning-compiled", "hand-compiled", "project Lightning --compile / compiled hand loop"),
          ("lightning-compiled", "lightning", "project Lightning --compile / eager"),
          ("hand-compiled", "hand", "compiled hand loop / eager"),
          ("keras-compiled", "keras", "project Keras --compile / eager"),
          ("lightning-bf16", "lightning", "project Lightning bf16-mixed / 32"),
          ("keras-bf16", "keras", "project Keras bf16-mixed / 32"))


def project_run(backend: str, settings: ExperimentSettings, splits, baton: Baton | None = None
                ) -> tuple[list[float], dict | None]:
    """Epoch times (train + validation) and per-step profile of one run of the project's own training."""
    from lab.run.backend import get_backend

    plan = get_backend(backend).plan_devices(settings)
    if backend == "lightning":
        from lightning_modules.training import train
    else:
        from keras_models.training import train
    turns = (_turns(backend, baton),) if baton and baton.fds else ()  # only when paired: the path as users run it
    with tempfile.TemporaryDirectory() as tmp:
        trained = train(settings, splits, Path(tmp), plan, callbacks=turns)
    return [row["time/epoch_s"] for row in trained.record.history], trained.profile


def _turns(backend: str, baton: Baton):
    """A callback taking the baton's turns (bench.common.Baton) outside the recorder's epoch clock: before the
    first epoch and after each epoch's end, where the project's recorder, first of the callbacks, stopped it."""
    if backend == "lightning":
        import pytorch_lightning as pl

        class Turns(pl.Callback):
            def on_train_start(self, trainer, pl_module):
                baton.turn()

            def on_train_epoch_end(self, trainer, pl_module):
                baton.turn()
    else:
        from core.frameworks import keras

        class Turns(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                baton.turn()

            def on_epoch_end(self, epoch, logs=None):
                baton.turn()
    return Turns()


def project_times(backend: str, settings: ExperimentSettings, splits) -> list[float]:
    """Epoch times (train + validation) of one run of the project's own training on `backend`."""
    return project_run(backend, settings, splits)[0]


def bare_lightning_times(settings: ExperimentSettings, splits, baton: Baton | None = None) -> list[float]:
    """The project's LightningModule and batches in a Trainer with no callbacks, logger, checkpoints or
    progress bar: what Lightning's own loop costs, apart from what the project adds to it."""
    import pytorch_lightning as pl

    from callbacks.lightning_recorder import synchronize
    from datamodules.torch_data import ArraysDataModule
    from lab.run.backend import get_backend
    from lightning_modules.training import build_model

    class EpochClock(pl.Callback):
        def __init__(self):
            self.times: list[float] = []

        def on_train_epoch_start(self, trainer, module):
            if baton is not None:
                baton.turn()
            synchronize(trainer)
            self.start = time.perf_counter()

        def on_validation_epoch_end(self, trainer, module):
            synchronize(trainer)
            self.times.append(time.perf_counter() - self.start)

    plan, clock = get_backend("lightning").plan_devices(settings), EpochClock()
    pl.seed_everything(settings.seed, verbose=False)
    trainer = pl.Trainer(max_epochs=settings.epochs, accelerator=plan.accelerator, devices=plan.devices, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(build_model(settings, splits), datamodule=ArraysDataModule(splits, settings.batch_size, settings.seed))
    return clock.times


def run_way(way: str, settings: ExperimentSettings, splits, baton: Baton | None = None
            ) -> tuple[list[float], dict | None]:
    """One way in this process: (epoch times, the project path's profile or None)."""
    from dataclasses import replace

    if way in ("hand", "hand-compiled"):
        device = "cuda" if _accelerator(settings) == "gpu" else "cpu"
        history, _ = fair_torch_loop(settings, splits, settings.epochs, device, compiled=way == "hand-compiled",
                                     baton=baton)
        return [row["time/epoch_s"] for row in history], None
    if way == "bare-lightning":
        return bare_lightning_times(settings, splits, baton), None
    if way == "keras-fit":
        return plain_keras_fit(settings, splits, settings.epochs, baton), None
    backend = way.split("-")[0]
    precision = "bf16-mixed" if way.endswith("-bf16") else settings.precision
    return project_run(backend, replace(settings, compile=way.endswith("-compiled"), precision=precision), splits,
                       baton)


def _accelerator(settings: ExperimentSettings) -> str:
    from lab.run.backend import get_backend

    return get_backend("lightning").plan_devices(settings).accelerator


def _settings(args):
    from lab.config.settings import make_settings

    values = {"dataset": args.dataset, "data_dir": args.data_dir, "epochs": args.epochs, "model": args.model,
              "batch_size": args.batch_size, "gpus": args.gpus, "train_images": args.train_images}
    for name in ("width", "depth"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return make_settings(values)


def child(args) -> None:
    """--way: one run of one way, its result written to --result as JSON."""
    if args.way in TORCH_ONLY:
        from core import frameworks

        frameworks.without_tensorflow()  # as train_lightning.py: this process never runs Keras
    from datamodules import load_splits

    settings = _settings(args)
    splits = load_splits(settings.dataset, settings.data_dir, settings.seed, settings.val_fraction,
                         train_images=settings.train_images)
    baton = Baton()
    times, profile = run_way(args.way, settings, splits, baton)
    write_json_atomic(args.result, {"times": times, "profile": profile, "train_images": len(splits.train)})
    baton.end()


def _child_argv(args, way: str, result: Path) -> list[str]:
    argv = [sys.executable, "-m", "bench.speed", "--way", way, "--result", str(result), "--dataset", args.dataset,
            "--epochs", str(args.epochs), "--model", args.model, "--batch-size", str(args.batch_size)]
    for name in ("data_dir", "gpus", "train_images", "width", "depth"):
        if getattr(args, name) is not None:
            argv += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    return argv


def _child(args, way: str, logs: Path) -> tuple[list[str], Path, Path, Path, dict]:
    """How `way` runs in a new process: (argv, its result, its log, the project copy, its environment). A way
    ending in BASELINE runs from --baseline's copy of the project."""
    result = logs / f"{way}.json"
    code = Path(args.baseline) if way.endswith(BASELINE) else REPO
    return _child_argv(args, way.removesuffix(BASELINE), result), result, logs / f"{way}.log", code, \
        thread_env(args.threads)


def run_way_in_fresh_process(args, way: str, logs: Path) -> dict:
    """One run of `way` in a new process; its output goes to a log, its result comes back."""
    return fresh_process(*_child(args, way, logs))


def paired_rounds(args, ways: list[str], logs: Path) -> dict[str, list[dict]]:
    """--paired: each round starts every way's process at once; they take turns epoch by epoch (run_paired), in
    reverse order every other round: {way: [its result of each round]}."""
    results = {way: [] for way in ways}
    for round_ in range(args.rounds):
        order = ways if round_ % 2 == 0 else list(reversed(ways))
        for way, result in run_paired({way: _child(args, way, logs) for way in order}).items():
            results[way].append(result)
            print(f"round {round_ + 1}: {way}: " + ", ".join(f"{t:.2f}" for t in result["times"]) + " s", flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("speed", __doc__)
    parser.add_argument("--dataset", default="fashion_mnist", help="dataset (default fashion_mnist)")
    parser.add_argument("--data-dir", default=None, help="where the dataset files are")
    parser.add_argument("--model", default="first_cnn", help="model (default first_cnn)")
    parser.add_argument("--width", type=int, default=None, help="cifar_cnn width")
    parser.add_argument("--depth", type=int, default=None, help="cifar_cnn depth")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    parser.add_argument("--train-images", type=int, default=None, help="training images (default: all)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up (default 3)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the ways (default 5)")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs for every way (default: auto)")
    parser.add_argument("--compile", action="store_true", help="add the compiled ways")
    parser.add_argument("--bf16", action="store_true", help="add the project ways in bf16-mixed (a CPU needs "
                                                            "bfloat16 units, lab.config.devices)")
    parser.add_argument("--threads", type=int, default=None,
                        help="compute threads of each way's process (PyTorch and TensorFlow; default: theirs)")
    parser.add_argument("--ways", default=None, help=f"comma-separated subset of {', '.join({**EAGER, **COMPILED})}")
    parser.add_argument("--baseline", default=None,
                        help="a copy of the project at an earlier commit (git archive COMMIT | tar -x -C DIR): each "
                             "project way also runs from it, as WAY@baseline, for before/after ratios")
    parser.add_argument("--paired", action="store_true",
                        help="start every way's process of a round at once and let them take turns, one epoch each, "
                             "so that their epochs alternate seconds apart (steadier ratios on a shared machine)")
    parser.add_argument("--way", default=None, help=argparse.SUPPRESS)  # a child process: one run of one way
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.way:
        return child(args)
    ways = {**EAGER, **(COMPILED if args.compile else {}), **(MIXED if args.bf16 else {})}
    if args.ways:
        ways = {key: {**EAGER, **COMPILED, **MIXED}[key] for key in args.ways.split(",")}
    if args.baseline:
        ways = {**ways, **{k + BASELINE: f"{v} (baseline)" for k, v in ways.items() if k in PROJECT}}
    with tempfile.TemporaryDirectory() as logs:
        if args.paired:
            return report(args, ways, paired_rounds(args, list(ways), Path(logs)))
        results = interleaved_rounds(args.rounds, ["speed"], {k: k for k in ways},
                                     lambda _, way: run_way_in_fresh_process(args, way, Path(logs)),
                                     lambda r: ", ".join(f"{t:.2f}" for t in r["times"]) + " s")["speed"]
    report(args, ways, results)


def report(args, ways: dict, results: dict) -> None:
    images = next(iter(results.values()))[0]["train_images"]
    threads = f", {args.threads} thread(s) each" if args.threads else ""
    print(f"\n{args.model}, batch {args.batch_size}, {args.dataset} ({images} training images): median epoch (train + "
          f"validation) after warm-up, {args.rounds} rounds of {args.epochs} epochs, each run a fresh process{threads}")
    per_round = {way: [steady(r["times"]) for r in runs] for way, runs in results.items()}
    for way, rounds in per_round.items():
        print(f"  {ways[way]:32s} " + "  ".join(f"{t:7.2f} s" for t in rounds))
    for way, runs in results.items():
        profiles = [r["profile"] for r in runs if r.get("profile")]
        if profiles:
            parts = {k: statistics.median(p[k] for p in profiles) for k in ("step_ms", "compute_ms", "data_ms",
                                                                              "overhead_ms")}
            print(f"  profile of {ways[way]} (median of rounds): step {parts['step_ms']:.2f} ms = compute "
                  f"{parts['compute_ms']:.2f} + data {parts['data_ms']:.2f} + loop {parts['overhead_ms']:.2f}; "
                  "steps per round: " + ", ".join(f"{p['step_ms']:.2f}" for p in profiles))
    baseline = [(way, way + BASELINE, f"{ways[way]}: now / baseline")
                for way in per_round if way + BASELINE in per_round]
    for mine, reference, what in (*RATIOS, *baseline):
        if mine in per_round and reference in per_round:
            ratios = [m / r for m, r in zip(per_round[mine], per_round[reference])]
            print(f"  {what}: {statistics.median(ratios):.2f}x (rounds: "
                  + ", ".join(f"{r:.2f}" for r in ratios) + ")")
    for mine, reference, what in baseline:  # the steady steps the profiles timed, within each round
        steps = [(m["profile"], r["profile"]) for m, r in zip(results[mine], results[reference])]
        if all(m and r for m, r in steps):
            ratios = [m["step_ms"] / r["step_ms"] for m, r in steps]
            print(f"  {what}, profiled step: {statistics.median(ratios):.2f}x (rounds: "
                  + ", ".join(f"{r:.2f}" for r in ratios) + ")")


if __name__ == "__main__":
    run_benchmark(main)
