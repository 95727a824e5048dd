"""Keras' BatchNormalization on the CPU: training steps of the project's Keras cifar_cnn with Keras' own layer
(`keras`), with the project's (keras_models.components.network.BatchNormalization: TensorFlow's fused kernel,
`fused`), and without batch normalization (`none`, to show its share of the step), in float32 and under the
mixed_bfloat16 policy.

    python -m bench.keras_batchnorm [--width 32 --depth 3 --batch-size 128] [--steps 10] [--rounds 3]
                                    [--threads 1] [--ways keras,fused,none] [--precisions 32,bf16-mixed]
                                    [--in-process]

Each way runs in a fresh process with the same threads (TensorFlow's intra- and inter-op pools, --threads),
in interleaved rounds, the ways in reverse order every other round, so that a slow spell of a shared machine
falls on all alike. A process builds the network as the project does (keras_models.components.network, the
policy set first, as `--precision` does), compiles it with the project's Adam and loss, trains 3 warm-up steps
on one batch of seeded random uint8 images of CIFAR-10's shape, then times --steps steps (`train_on_batch`),
each in wall time and in the process's CPU time (all its threads; on one thread, the step's work, which other
load on the machine moves less). Prints each way's median step over the rounds in both clocks, and per
precision the ratio of each way's step to `keras`'s (the median of the rounds' ratios). --in-process: every
way's model in this one process instead, each round a block of --steps steps of each, in alternation, so that
the ways' blocks are seconds apart (wall time steadier on a loaded machine; in one process the ways share
TensorFlow's caches and threads).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import benchmark_parser, fresh_process, interleaved_rounds, run_benchmark, thread_env
from core.io import write_json_atomic

WAYS = ("keras", "fused", "none")
PRECISIONS = ("32", "bf16-mixed")
SHAPE = (32, 32, 3)


def _parser():
    parser = benchmark_parser("keras_batchnorm", __doc__)
    parser.add_argument("--width", type=int, default=32, help="cifar_cnn width (default 32)")
    parser.add_argument("--depth", type=int, default=3, help="cifar_cnn depth (default 3)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each way (default 3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="TensorFlow threads per process (default 1; 0: TensorFlow's default)")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"comma-separated, of {', '.join(WAYS)}")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated, of 32, bf16-mixed")
    parser.add_argument("--in-process", action="store_true", help="all ways in this process, alternating blocks")
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=PRECISIONS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.way:
        write_json_atomic(Path(args.result), one_way(args))
        return
    ways, precisions = _listed(parser, args.ways, WAYS, "--ways"), _listed(parser, args.precisions, PRECISIONS,
                                                                           "--precisions")
    if args.in_process:
        models = _in_process_models(args, ways, precisions)
        runs = interleaved_rounds(args.rounds, precisions, {way: way for way in ways},
                                  lambda precision, way: _timed(models[precision, way], *models["batch"], args.steps),
                                  _line)
    else:
        with tempfile.TemporaryDirectory(prefix="keras_batchnorm-") as tmp:
            runs = interleaved_rounds(args.rounds, precisions, {way: way for way in ways},
                                      lambda precision, way: _run(args, way, precision, Path(tmp)), _line)
    print(json.dumps(summary(args, runs), indent=1))


def _line(result: dict) -> str:
    return f"step {result['wall']:.1f} ms wall, {result['cpu']:.1f} ms CPU"


def _listed(parser, value: str, allowed: tuple, flag: str) -> list[str]:
    chosen = [v for v in value.split(",") if v]
    wrong = [v for v in chosen if v not in allowed]
    if wrong or not chosen:
        parser.error(f"{flag} takes a comma-separated list of {', '.join(allowed)}, not {value!r}")
    return chosen


def _run(args, way: str, precision: str, tmp: Path) -> dict:
    result, log = tmp / f"{way}-{precision}.json", tmp / f"{way}-{precision}.log"
    argv = [sys.executable, "-m", "bench.keras_batchnorm", "--way", way, "--precision", precision,
            "--result", str(result), *(f"--{k}={getattr(args, k.replace('-', '_'))}"
                                       for k in ("width", "depth", "batch-size", "steps", "threads"))]
    try:
        return fresh_process(argv, result, log, env=thread_env(args.threads or None))
    except SystemExit:
        sys.stderr.write(log.read_text()[-3000:])
        raise


def summary(args, runs: dict) -> dict:
    """Median step per precision and way in both clocks, and each way's step over keras's, round by round."""
    out = {"model": "cifar_cnn", "width": args.width, "depth": args.depth, "batch": args.batch_size,
           "threads": args.threads, "steps": args.steps, "rounds": args.rounds, "in_process": args.in_process}
    for precision, ways in runs.items():
        for way, rounds in ways.items():
            for clock in ("wall", "cpu"):
                out[f"{precision} {way} {clock} ms"] = round(statistics.median(r[clock] for r in rounds), 1)
        for way in ways:
            if way != "keras" and "keras" in ways:
                for clock in ("wall", "cpu"):
                    ratios = [r[clock] / k[clock] for r, k in zip(ways[way], ways["keras"])]
                    out[f"{precision} {way}/keras {clock}"] = round(statistics.median(ratios), 3)
    return out


def one_way(args) -> dict:
    """This process's way: the median of its timed steps in milliseconds, {"wall": ..., "cpu": ...}."""
    model, batch = _model(args, args.way, args.precision), _batch(args)
    _warm_up(model, *batch)
    return _timed(model, *batch, args.steps)


def _in_process_models(args, ways: list[str], precisions: list[str]) -> dict:
    """{(precision, way): its compiled, warmed-up model, "batch": (x, y)}, with --threads TensorFlow threads."""
    from core.frameworks import tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    models = {"batch": _batch(args)}
    for precision in precisions:
        for way in ways:
            models[precision, way] = _model(args, way, precision)
            _warm_up(models[precision, way], *models["batch"])
    return models


def _model(args, way: str, precision: str):
    """cifar_cnn built as the project builds it, with the way's batch norm, under the precision's policy."""
    from core.frameworks import keras
    from keras_models.compiling import compile_model
    from keras_models.components import network
    from keras_models.training import POLICIES
    from lab.config.settings import make_settings
    from lab.specs import architectures as A
    from lab.specs.models import model_spec
    from lab.specs.optimizer import OptimizerSpec

    settings = make_settings({"model": "cifar_cnn", "width": args.width, "depth": args.depth,
                              "batch_size": args.batch_size})
    spec = [layer for layer in model_spec(settings, SHAPE, 10) if way != "none" or not isinstance(layer, A.BatchNorm)]
    before = network.BATCH_NORM, keras.mixed_precision.global_policy()
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    network.BATCH_NORM = network.BatchNormalization if way == "fused" else keras.layers.BatchNormalization
    try:
        return compile_model(network.build_network(spec, SHAPE, [0.5] * 3, [0.25] * 3),
                             OptimizerSpec.from_settings(settings))
    finally:  # --in-process builds several models, and a test calls it in its own process
        network.BATCH_NORM = before[0]
        keras.mixed_precision.set_global_policy(before[1])


def _batch(args):
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (args.batch_size, *SHAPE), dtype=np.uint8), rng.integers(0, 10, args.batch_size)


def _warm_up(model, x, y) -> None:
    for _ in range(3):
        model.train_on_batch(x, y)


def _timed(model, x, y, steps: int) -> dict:
    """The median of `steps` steps in milliseconds, wall and CPU (the process's, all threads)."""
    wall, cpu = [], []
    for _ in range(steps):
        w, c = time.perf_counter(), time.process_time()
        model.train_on_batch(x, y)
        wall.append((time.perf_counter() - w) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return {"wall": statistics.median(wall), "cpu": statistics.median(cpu)}

if __name__ == "__main__":
    run_benchmark(main)
