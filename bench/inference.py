"""Inference speed: per model and backend, latency per image at batch 1 (median and p95 over --calls calls after
--warmup) and images per second at batch 256, several ways, each a fresh process with the same thread count, in
interleaved rounds.

    python -m bench.inference [--models mlp,first_cnn,cifar_cnn,mobilenet] [--backends lightning,keras]
                              [--rounds 3] [--threads 1] [--run-dir DIR ...] [--out DIR]

The ways, timed by the runs' own code (lab.records.inference_timing) on the run's tested weights and its first 256
test images: Lightning, the network in eval mode under torch.inference_mode; Keras, the model called directly and
model.predict; both, ONNX Runtime (CPUExecutionProvider) on the file `export.py RUN_DIR --format onnx` writes
(RUN_DIR/exported/onnx/model.onnx), in a process that imports neither torch nor TensorFlow. Threads: PyTorch's
torch.set_num_threads, TensorFlow's intra- and inter-op pools, ONNX Runtime's intra_op_num_threads, all --threads.

The runs: --run-dir's finished runs, or tiny ones trained first, each a fresh train_<backend>.py of one epoch with
--profile false, into --out (default a temporary folder): mlp and first_cnn on 2,000 Fashion-MNIST training images
(--fashion-dir), cifar_cnn on 2,000 of the CIFAR-10 JPEGs (--cifar-dir), the zoo's smallest backbone (mobilenet:
mobilenet_v3_small / MobileNetV3Small, from scratch) on 256 of the digits, resized to 224 pixels in the network.
Each round runs every way of every run once, the ways in reverse order every other round; the table gives the
median of the rounds.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, SHARED_CIFAR, benchmark_parser, fresh_process, run_benchmark, thread_env
from core.io import write_json_atomic

FASHION = "/usr/share/datasets/fashion-mnist"
MODELS = ("mlp", "first_cnn", "cifar_cnn", "mobilenet")
WAYS = {"lightning": ("torch", "onnx"), "keras": ("keras-call", "keras-predict", "onnx")}
WAY_TITLES = {"torch": "torch, inference_mode", "keras-call": "model(x, training=False)",
              "keras-predict": "model.predict", "onnx": "ONNX Runtime"}
NATIVE = {"lightning": "torch", "keras": "keras-call"}
ONNX_FILE = Path("exported") / "onnx" / "model.onnx"
# wall: the latency a caller sees; cpu: the CPU time the process spent (all its threads), which other work on a
# shared machine barely changes
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def train_flags(model: str, args) -> list[str]:
    """The flags of a tiny run of `model` (besides --model, --out and the run's length)."""
    if model == "cifar_cnn":
        return ["--dataset", "folder", "--data-dir", args.cifar_dir, "--train-images", "2000"]
    if model == "mobilenet":  # 224 pixels: fewer training images
        return ["--dataset", "digits", "--weights", "none", "--train-images", "256"]
    return ["--dataset", "fashion_mnist", "--data-dir", args.fashion_dir, "--train-images", "2000"]


def train_run(model: str, backend: str, args, out: Path, log: Path) -> Path:
    """A tiny finished run of model on backend, trained in a fresh process unless --out holds one; its folder."""
    out = out / f"{model}-{backend}"
    done = sorted(out.rglob("results.json"))
    if done:
        return done[0].parent
    argv = [sys.executable, str(REPO / f"train_{backend}.py"), "--model", model, *train_flags(model, args),
            "--epochs", "1", "--profile", "false", "--progress", "none",
            "--out", str(out)]
    print(f"training a tiny {model} run on {backend} ...", flush=True)
    with log.open("a") as sink:
        if subprocess.run(argv, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT).returncode:
            raise SystemExit(f"training {model} on {backend} failed; its output: {log}")
    return next(out.rglob("results.json")).parent


def test_images(run_dir: Path, to: Path) -> Path:
    """The run's first 256 test images (its settings' data), saved for the ways' processes."""
    from lab.config.data import load_data
    from lab.config.settings import make_settings
    from lab.records.inference_timing import BATCH
    from lab.records.rundirs import load_settings

    np.save(to, load_data(make_settings(load_settings(run_dir))).test.images[:BATCH])
    return to


def export_onnx(run_dir: Path, log: Path) -> str | None:
    """Why the run's ONNX file cannot be had (None: it is there), exported with export.py where it is not yet."""
    if (run_dir / ONNX_FILE).is_file():
        return None
    if not (REPO / "export.py").is_file():
        return "export.py is not in this tree yet (issue #28's export); the ONNX Runtime ways are left out"
    with log.open("a") as sink:
        done = subprocess.run([sys.executable, str(REPO / "export.py"), str(run_dir), "--format", "onnx"], cwd=REPO,
                              stdout=sink, stderr=subprocess.STDOUT)
    if done.returncode or not (run_dir / ONNX_FILE).is_file():
        return f"export.py {run_dir} --format onnx failed (exit {done.returncode}; its output: {log})"
    return None


def child(args) -> None:
    """--way: one way timed on one run, its figures written to --result as JSON."""
    timing = {"calls": args.calls, "warmup": args.warmup, "budget_s": None, "clock": CLOCKS[args.clock]}
    figures = way_figures(args.way, Path(args.run_dir[0]), args.threads, np.load(args.images), timing)
    write_json_atomic(args.result, figures)


def way_figures(way: str, run_dir: Path, threads: int, images: np.ndarray, timing: dict) -> dict:
    """`way` timed on the run's network with `threads` compute threads (lab.records.inference_timing.measure's
    figures)."""
    if way == "onnx":
        return _onnx_figures(run_dir, threads, images, timing)
    if way == "torch":
        return _torch_figures(run_dir, threads, images, timing)
    return _keras_figures(run_dir, threads, images, timing, predict=way == "keras-predict")


def _onnx_figures(run_dir: Path, threads: int, images: np.ndarray, timing: dict) -> dict:
    import onnxruntime as ort

    from lab.records.inference_timing import measure

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(run_dir / ONNX_FILE), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return measure(lambda batch: session.run(None, {name: batch}), images, **timing)


def _tested_checkpoint(run_dir: Path) -> Path:
    from lab.predict.classify import find_checkpoint
    from lab.records.results import load_results

    results = load_results(run_dir)
    return find_checkpoint(run_dir, results["backend"], results["test"].get("weights", "last"))


def _torch_figures(run_dir: Path, threads: int, images: np.ndarray, timing: dict) -> dict:
    """As a run times itself (lightning_modules.profiling.inference_speed), on the CPU."""
    from core import frameworks

    frameworks.without_tensorflow()  # as train_lightning.py: this process never runs Keras
    import torch

    from lab.predict.classify import old_description
    from lightning_modules.profiling import inference_speed
    from lightning_modules.training import load_classifier

    torch.set_num_threads(threads)
    checkpoint = _tested_checkpoint(run_dir)
    module = load_classifier(checkpoint, old_description(run_dir, checkpoint, None))
    return inference_speed(module, images, torch.device("cpu"), **timing)


def _keras_figures(run_dir: Path, threads: int, images: np.ndarray, timing: dict, predict: bool) -> dict:
    """The direct call as a run times itself (keras_models.profiling.inference_speed), or model.predict."""
    from core.frameworks import keras, tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from keras_models.profiling import inference_speed  # importing keras_models registers its layers for load_model
    from lab.records.inference_timing import measure

    model = keras.models.load_model(_tested_checkpoint(run_dir), safe_mode=True)
    if predict:
        return measure(lambda batch: model.predict(batch, batch_size=len(batch), verbose=0), images, **timing)
    return inference_speed(model, images, False, **timing)


def run_way(args, key: str, run_dir: Path, way: str, logs: Path) -> dict:
    """One way timed on one run in a fresh process."""
    name = _file_name(key)
    result = logs / f"{name}-{way}.json"
    argv = [sys.executable, "-m", "bench.inference", "--way", way, "--run-dir", str(run_dir), "--images",
            str(logs / f"{name}-images.npy"), "--threads", str(args.threads), "--calls", str(args.calls), "--warmup",
            str(args.warmup), "--clock", args.clock, "--result", str(result)]
    return fresh_process(argv, result, logs / f"{name}-{way}.log", env=thread_env(args.threads))


def _file_name(key: str) -> str:
    return key.replace("/", "-")


def rounds(args, runs: dict[str, tuple[Path, list[str]]], logs: Path) -> dict[str, dict[str, list[dict]]]:
    """Every way of every run, --rounds times, the ways in reverse order every other round: {run: {way: [figures of
    each round]}}."""
    results = {key: {way: [] for way in ways} for key, (_, ways) in runs.items()}
    for round_ in range(args.rounds):
        for key, (run_dir, ways) in runs.items():
            for way in ways if round_ % 2 == 0 else list(reversed(ways)):
                figures = run_way(args, key, run_dir, way, logs)
                results[key][way].append(figures)
                print(f"round {round_ + 1}: {key}: {way}: {figures['ms_per_image_b1']:.4g} ms per image at batch 1, "
                      f"{figures['images_per_s_b256']:,.0f} images/s at batch 256", flush=True)
    return results


def table(results: dict[str, dict[str, list[dict]]]) -> str:
    """The markdown table: each way's median over the rounds."""
    lines = ["| model | backend | way | ms per image, batch 1 (median) | p95 | images/s, batch 256 |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for key, ways in results.items():
        model, backend = key.rsplit("/", 1)
        for way, runs in ways.items():
            ms, p95, rate = (statistics.median(r[name] for r in runs)
                             for name in ("ms_per_image_b1", "p95_ms_b1", "images_per_s_b256"))
            lines.append(f"| `{model}` | {backend} | {WAY_TITLES[way]} | {ms:.3g} | {p95:.3g} | {rate:,.0f} |")
    return "\n".join(lines)


def comparisons(results: dict[str, dict[str, list[dict]]]) -> list[str]:
    """ONNX Runtime against the framework's way, per run: ratios taken within each round, then their median."""
    lines = []
    for key, ways in results.items():
        native = NATIVE[key.rsplit("/", 1)[1]]
        if "onnx" not in ways or native not in ways:
            continue
        latency = statistics.median(n["ms_per_image_b1"] / o["ms_per_image_b1"]
                                    for n, o in zip(ways[native], ways["onnx"]))
        rate = statistics.median(o["images_per_s_b256"] / n["images_per_s_b256"]
                                 for n, o in zip(ways[native], ways["onnx"]))
        lines.append(f"{key}: ONNX Runtime against {WAY_TITLES[native]}: batch 1 {_faster(latency)}, "
                     f"batch 256 {_faster(rate)}")
    return lines


def _faster(ratio: float) -> str:
    return f"{ratio:.2f}x as fast" if ratio >= 1 else f"{1 / ratio:.2f}x slower"


def prepare_runs(args, workdir: Path, logs: Path) -> dict[str, tuple[Path, list[str]]]:
    """{'model/backend': (its run folder, its ways)}, the test images of each saved in logs."""
    from lab.records.results import load_results

    found = [Path(d) for d in args.run_dir] or [
        train_run(model, backend, args, workdir, logs / "training.log")
        for model in args.models.split(",") for backend in args.backends.split(",")]
    runs, unexported = {}, set()
    for run_dir in found:
        results = load_results(run_dir)
        key = f"{results['model']}/{results['backend']}"
        key += f" ({len(runs) + 1})" if key in runs else ""  # two runs of one model on one backend
        test_images(run_dir, logs / f"{_file_name(key)}-images.npy")
        ways = [w for w in WAYS[results["backend"]] if w in args.ways.split(",")]
        why = export_onnx(run_dir, logs / "export.log") if "onnx" in ways else None
        if why:
            unexported.add(why)
            ways.remove("onnx")
        runs[key] = (run_dir, ways)
    for why in sorted(unexported):
        print(why, flush=True)
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("inference", __doc__)
    parser.add_argument("--models", default=",".join(MODELS), help=f"models to train tiny runs of (default "
                                                                     f"{','.join(MODELS)})")
    parser.add_argument("--backends", default="lightning,keras", help="backends (default lightning,keras)")
    parser.add_argument("--ways", default="torch,keras-call,keras-predict,onnx",
                        help="ways to time (default all: torch,keras-call,keras-predict,onnx)")
    parser.add_argument("--run-dir", action="append", default=[], help="a finished run to time instead of training "
                                                                       "tiny ones (repeat for several)")
    parser.add_argument("--out", default=None, help="where the tiny runs are trained, and found again by the next "
                                                    "command (default: a temporary folder)")
    parser.add_argument("--fashion-dir", default=FASHION, help=f"the Fashion-MNIST files (default {FASHION})")
    parser.add_argument("--cifar-dir", default=SHARED_CIFAR, help=f"the CIFAR-10 JPEGs (default {SHARED_CIFAR})")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the ways (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help=f"compute threads of every way (default this machine's {os.cpu_count()})")
    parser.add_argument("--calls", type=int, default=200, help="batch-1 calls timed (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="batch-1 calls before timing (default 20)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall: elapsed time (default); cpu: the CPU time each way's process spent, steadier on a "
                             "machine shared with other work")
    parser.add_argument("--way", default=None, help=argparse.SUPPRESS)  # a child process: one way on one run
    parser.add_argument("--images", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.way:
        return child(args)
    with tempfile.TemporaryDirectory() as temp:
        logs = Path(args.out) / "logs" if args.out else Path(temp)  # kept with --out, for a failed way's output
        logs.mkdir(parents=True, exist_ok=True)
        runs = prepare_runs(args, Path(args.out) if args.out else logs / "runs", logs)
        load = os.getloadavg()[0]
        results = rounds(args, runs, logs)
    print(f"\nInference on the CPU ({args.clock} clock), {args.threads} thread(s) per way, each way a fresh process; "
          "the median of "
          f"{args.rounds} rounds, each of {args.calls} batch-1 calls after {args.warmup} warm-up calls and 5 calls "
          f"of 256 images after one; load average {load:.1f} before the rounds, {os.getloadavg()[0]:.1f} after:\n")
    print(table(results))
    for line in comparisons(results):
        print(line)


if __name__ == "__main__":
    run_benchmark(main)
