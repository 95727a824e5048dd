"""DDP on the CPU: 2 processes x 1 thread against 1 process x 2 threads, in training images per second.

    python -m bench.ddp [--models first_cnn,cifar_cnn] [--rounds 2] [--epochs 3] [--train-images 6000]
                        [--batch-size 32] [--width 16] [--cifar-dir DIR]

Each run is what a user runs: a fresh process of `train_lightning.py --accelerator cpu --devices 2` (DDP,
2 processes on gloo) or `--devices 1` (one process), writing to a fresh temporary --out folder. The figures
are read from the run's results.json: timing.images_per_s (training images over the median epoch after
the first, an epoch being training plus validation) and timing.steady_epoch_s, and the test accuracy.
first_cnn trains on Fashion-MNIST, cifar_cnn (width --width, depth 3) on the CIFAR-10 JPEGs of the shared
folder (the `folder` dataset), both on the first --train-images training images, with the same global
batch both ways (each DDP rank trains on half of it). The two ways alternate in rounds, the order
reversed every other round, so a change in the machine's load hits both alike. Each run's line shows the
machine's 1-minute load average before and after it: other work on the machine slows the two ways unequally.

Threads are not set by the benchmark: OMP_NUM_THREADS is removed from the runs' environment, so Lightning's
DDP launcher gives each of its processes cpu_count // 2 = 1 thread by itself, and the one process keeps
PyTorch's default (2 threads here). Each run reports, at its exit, the threads every one of its
train_lightning.py processes used (a sitecustomize on the runs' PYTHONPATH that only registers an atexit
hook), and the table shows them.
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, SHARED_CIFAR, benchmark_parser, interleaved_rounds, run_benchmark
from core.errors import LabError

MODELS = ("first_cnn", "cifar_cnn")
WAYS = {"DDP 2 processes": 2, "1 process": 1}  # way -> --devices
DDP_TIMEOUT_S = "120"  # LAB_DDP_TIMEOUT_S of the runs: a rank stuck at a collective ends the run in 2 minutes

# Written into each run's probe folder and put first on its PYTHONPATH: at exit, every train_lightning.py
# process that imported torch writes the threads it used. Nothing else in the run changes.
PROBE = '''import atexit, os, sys
def _report():
    torch = sys.modules.get("torch")
    if torch is not None and sys.argv and sys.argv[0].endswith("train_lightning.py"):
        with open(os.path.join(os.environ["BENCH_DDP_PROBE"], f"threads-{os.getpid()}.txt"), "w") as f:
            f.write(f"{torch.get_num_threads()} {os.environ.get('OMP_NUM_THREADS', '-')}")
atexit.register(_report)
'''


def main(argv: list[str] | None = None) -> int | None:
    parser = benchmark_parser("ddp", __doc__)
    parser.add_argument("--models", default=",".join(MODELS), help=f"models to time, of {', '.join(MODELS)} "
                        "(default both)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each way per model (default 2)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up (default 3)")
    parser.add_argument("--train-images", type=int, default=6000, help="training images per epoch (default 6000)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="global batch, the same both ways: each DDP rank trains on half (default 32)")
    parser.add_argument("--width", type=int, default=16, help="cifar_cnn width (default 16)")
    parser.add_argument("--cifar-dir", default=SHARED_CIFAR,
                        help=f"the CIFAR-10 image folder or tar (default {SHARED_CIFAR})")
    parser.add_argument("--run-timeout", type=int, default=900, help="seconds one run may take (default 900)")
    args = parser.parse_args(argv)
    models = check_args(args)
    started = time.perf_counter()
    runs = interleaved_rounds(args.rounds, models, WAYS, lambda model, way: one_run(args, model, way), describe)
    print_table(args, runs)
    print(f"\nbenchmark wall time: {time.perf_counter() - started:.0f} s")
    return None


def describe(run: dict) -> str:
    return (f"{run['images_per_s']:,.0f} images/s, steady epoch {run['steady_epoch_s']:.2f} s (epochs "
            + ", ".join(f"{t:.2f}" for t in run["epoch_s"]) + f" s), test {run['accuracy']:.2%}, threads "
            f"{run['threads']}, {run['wall_s']:.0f} s wall, load {run['load'][0]:.1f} -> {run['load'][1]:.1f}")


def check_args(args) -> list[str]:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if not models or unknown:
        raise LabError(f"--models takes {' and/or '.join(MODELS)}, comma-separated, not {args.models!r}.")
    if args.rounds < 1:
        raise LabError(f"--rounds must be at least 1, not {args.rounds}.")
    if args.epochs < 2:
        raise LabError(f"--epochs must be at least 2 (the first epoch is left out of the timing), not {args.epochs}.")
    if args.batch_size < 4 or args.batch_size % 2:
        raise LabError(f"--batch-size must be even and at least 4 (2 images per DDP rank), not {args.batch_size}.")
    if args.train_images < args.batch_size:
        raise LabError(f"--train-images ({args.train_images}) must be at least the batch size ({args.batch_size}).")
    if args.run_timeout < 1:
        raise LabError(f"--run-timeout must be a positive number of seconds, not {args.run_timeout}.")
    if "cifar_cnn" in models and not Path(args.cifar_dir).expanduser().exists():
        raise LabError(f"--cifar-dir {args.cifar_dir} does not exist; pass the CIFAR-10 image folder or tar.")
    return models


def run_argv(args, model: str, devices: int, out: Path) -> list[str]:
    data = (["--dataset", "fashion_mnist"] if model == "first_cnn" else
            ["--dataset", "folder", "--data-dir", str(Path(args.cifar_dir).expanduser().resolve()),
             "--width", str(args.width)])
    return [sys.executable, "train_lightning.py", "--model", model, *data, "--accelerator", "cpu",
            "--devices", str(devices), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--train-images", str(args.train_images), "--out", str(out)]


def one_run(args, model: str, devices: int) -> dict:
    """One fresh train_lightning.py process (and, for DDP, the rank it starts), in its own session; the whole
    process group is killed when it ends, however it ends."""
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as tmp:
        tmp = Path(tmp)
        out, probe = tmp / "runs", tmp / "probe"
        probe.mkdir()
        (probe / "sitecustomize.py").write_text(PROBE)
        env = {**os.environ, "LAB_DDP_TIMEOUT_S": DDP_TIMEOUT_S, "BENCH_DDP_PROBE": str(probe),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(probe), os.environ.get("PYTHONPATH")]))}
        env.pop("OMP_NUM_THREADS", None)  # Lightning's DDP launcher sets 1 per process only when it is unset
        command = run_argv(args, model, devices, out)
        start, load = time.perf_counter(), os.getloadavg()[0]
        with open(tmp / "stdout", "w") as stdout, open(tmp / "stderr", "w") as stderr:
            proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=stdout, stderr=stderr,
                                    start_new_session=True)
            try:
                code = proc.wait(timeout=args.run_timeout)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                try:  # the group holds the DDP rank too; it is gone already after a clean run
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        wall = time.perf_counter() - start
        if code != 0:
            raise LabError(failure(model, devices, code, args.run_timeout, (tmp / "stderr").read_text()))
        found = sorted(out.rglob("results.json"))
        if len(found) != 1:
            raise LabError(f"the {model} run on {devices} device(s) left {len(found)} results.json files, not 1.")
        results = json.loads(found[0].read_text())
        threads = sorted(int(p.read_text().split()[0]) for p in probe.glob("threads-*.txt"))
    timing = results["timing"]
    return {"images_per_s": timing["images_per_s"], "steady_epoch_s": timing["steady_epoch_s"],
            "epoch_s": timing["epoch_s"], "accuracy": results["test"]["accuracy"], "device": results["device"],
            "threads": "+".join(map(str, threads)) if threads else "?", "wall_s": wall,
            "load": (load, os.getloadavg()[0])}


def failure(model: str, devices: int, code: int | None, limit: int, stderr: str) -> str:
    """One sentence about a run that failed: its own last line (a LabError is one line), or its exit code."""
    if code is None:
        return f"the {model} run on {devices} device(s) took longer than --run-timeout {limit} s and was stopped."
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = lines[-1].removeprefix("error:").strip()[:200].rstrip(" .") if lines else "no message"
    return f"the {model} run on {devices} device(s) failed (exit code {code}): {last}."


def print_table(args, runs: dict) -> None:
    print(f"\nLightning on the CPU ({os.cpu_count()} cores), global batch {args.batch_size}, {args.train_images:,} "
          f"training images, {args.epochs} epochs per run (the first left out), {args.rounds} round(s)")
    print(f"  {'model':10s} {'way':16s} {'threads':8s} {'images/s per round':>24s} {'steady epoch':>14s} "
          f"{'test accuracy':>16s}")
    for model, ways in runs.items():
        for way, rs in ways.items():
            speeds = "  ".join(f"{r['images_per_s']:7,.0f}" for r in rs)
            accuracies = "  ".join(f"{r['accuracy']:.2%}" for r in rs)
            epoch = statistics.median(r["steady_epoch_s"] for r in rs)
            print(f"  {model:10s} {way:16s} {rs[0]['threads']:8s} {speeds:>24s} {epoch:12.2f} s {accuracies:>16s}")
        ddp, one = ways["DDP 2 processes"], ways["1 process"]
        ratios = [d["images_per_s"] / o["images_per_s"] for d, o in zip(ddp, one)]
        print(f"  {model}: DDP / 1 process, images/s: " + ", ".join(f"{r:.2f}x" for r in ratios)
              + f" per round, median {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    run_benchmark(main)
