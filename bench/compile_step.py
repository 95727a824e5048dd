"""--compile on the CPU, step by step: an eager network and its torch.compile'd twin (--backend keras: a Keras
model compiled with jit_compile=False and its jit_compile=True twin, XLA) in one process, trained in alternating
blocks of 10 steps, so that a slow spell of a shared machine falls on both alike.

    python -m bench.compile_step [--model cifar_cnn --batch-size 128] [--threads 1] [--inductor cpp.simdlen=1]
    python -m bench.compile_step --backend keras [--model cifar_cnn --batch-size 128] [--threads 1] [--bf16]

Random uint8 images of the model's dataset shape, Adam, the same step as the project's (forward, cross-entropy,
backward, optimizer step). Prints the median step time of each (wall and CPU time) and the compiled/eager ratio,
the median over the pairs of blocks. --inductor sets torch._inductor.config options (tried one at a time:
docs/speed.md); --last N trains one batch of N images first, as an epoch's last batch does (a recompile);
--bf16 autocasts both to bfloat16, as --precision bf16-mixed does; --kernels also prints the profiler's top
operations of each, the generated kernels by name. With --backend keras both twins start from the same weights
and train with the project's Keras compile (keras_models.compiling: Adam, the loss on logits, the accuracy
metric), one `train_on_batch` a step; --bf16 sets the mixed_bfloat16 policy; first_step_s is the XLA twin's
first step (tracing and XLA's compiling), eager first_step_s the other's (tracing); the torch-only options are
refused.
"""
from __future__ import annotations

import copy
import json
import statistics
import time

from bench.common import benchmark_parser, run_benchmark

SHAPES = {"first_cnn": (28, 28, 1), "mlp": (28, 28, 1), "cnn": (28, 28, 1), "cifar_cnn": (32, 32, 3)}


def _parser():
    parser = benchmark_parser("compile_step", __doc__)
    parser.add_argument("--backend", default="lightning", choices=["lightning", "keras"],
                        help="lightning: torch.compile (default); keras: XLA (jit_compile)")
    parser.add_argument("--model", default="first_cnn", choices=sorted(SHAPES), help="lab model (default first_cnn)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    parser.add_argument("--pairs", type=int, default=20, help="pairs of 10-step blocks timed (default 20)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads, or TensorFlow's intra- and inter-op threads (default the framework's)")
    parser.add_argument("--mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    parser.add_argument("--dynamic", default=None, choices=["true", "false"], help="torch.compile dynamic")
    parser.add_argument("--inductor", nargs="*", default=[], metavar="KEY=VALUE",
                        help="torch._inductor.config options, e.g. cpp.simdlen=1 freezing=True")
    parser.add_argument("--last", type=int, default=0, help="first train one batch of this many images")
    parser.add_argument("--bf16", action="store_true",
                        help="autocast to bfloat16, or Keras' mixed_bfloat16 policy (both twins)")
    parser.add_argument("--kernels", action="store_true", help="also print each twin's top profiler rows")
    return parser


def set_inductor(options: list[str]) -> None:
    """KEY=VALUE strings into torch._inductor.config (dotted keys for its sub-configs, e.g. cpp.simdlen)."""
    import ast

    import torch._inductor.config as config

    for option in options:
        key, value = option.split("=", 1)
        target, *path = key.split(".")[::-1]
        obj = config
        for part in reversed(path):
            obj = getattr(obj, part)
        setattr(obj, target, ast.literal_eval(value))


def twins(args):
    """The eager network and its compiled copy, each with its Adam, and a step function."""
    import torch
    from torch.nn import functional as F

    from lab.config.settings import make_settings
    from lab.specs.models import model_spec
    from lightning_modules.components import build_network

    shape = SHAPES[args.model]
    torch.manual_seed(0)
    net = build_network(model_spec(make_settings({"model": args.model}), shape, 10), shape, [0.5] * shape[2],
                        [0.25] * shape[2])
    twin = copy.deepcopy(net)
    twin.compile(mode=args.mode, dynamic=None if args.dynamic is None else args.dynamic == "true")
    nets = {"eager": net, "compiled": twin}
    optimizers = {way: torch.optim.Adam(n.parameters(), 1e-3) for way, n in nets.items()}

    def step(way, x, y):
        with torch.autocast("cpu", torch.bfloat16, enabled=args.bf16):
            loss = F.cross_entropy(nets[way](x), y)
        optimizers[way].zero_grad()
        loss.backward()
        optimizers[way].step()
    return step, shape


def timed_pairs(step, x, y, pairs: int) -> dict:
    """Alternating 10-step blocks, eager first in even pairs: per-step wall and CPU milliseconds of each."""
    times = {way: {"wall": [], "cpu": []} for way in ("eager", "compiled")}
    for i in range(pairs):
        for way in ("eager", "compiled") if i % 2 == 0 else ("compiled", "eager"):
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(10):
                step(way, x, y)
            times[way]["wall"].append((time.perf_counter() - wall) * 100)
            times[way]["cpu"].append((time.process_time() - cpu) * 100)
    return times


def _kernels(step, x, y) -> None:
    from torch.profiler import profile

    for way in ("eager", "compiled"):
        with profile() as prof:
            for _ in range(10):
                step(way, x, y)
        rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:8]
        print(way + ": " + "; ".join(f"{e.key[:60]} {e.self_cpu_time_total / 10e3:.2f} ms" for e in rows))


def keras_twins(args):
    """The Keras model compiled without and with XLA, the same initial weights, and a step function."""
    import numpy as np

    from core.frameworks import keras, tf
    from keras_models.compiling import compile_model
    from keras_models.components.network import build_network
    from keras_models.training import _op_determinism
    from lab.config.settings import make_settings
    from lab.specs.models import model_spec
    from lab.specs.optimizer import OptimizerSpec

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if args.bf16 else "float32")
    _op_determinism(False)  # as train_keras.py --compile: Keras runs no XLA under deterministic ops
    shape, settings = SHAPES[args.model], make_settings({"model": args.model})
    keras.utils.set_random_seed(0)
    nets = {way: build_network(model_spec(settings, shape, 10), shape, [0.5] * shape[2], [0.25] * shape[2])
            for way in ("eager", "compiled")}
    nets["compiled"].set_weights(nets["eager"].get_weights())
    for way, net in nets.items():
        compile_model(net, OptimizerSpec.from_settings(settings), xla=way == "compiled")

    def step(way, x, y):
        nets[way].train_on_batch(x, y)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.batch_size, *shape), dtype=np.uint8)
    return step, x, rng.integers(0, 10, args.batch_size), tf.config.threading.get_intra_op_parallelism_threads()


def torch_twins(args):
    """twins(args), the seeded random batch, and torch's threads."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    set_inductor(args.inductor)
    step, shape = twins(args)
    x = torch.randint(0, 256, (args.batch_size, *shape), dtype=torch.uint8)
    return step, x, torch.randint(0, 10, (args.batch_size,)), torch.get_num_threads()


def _first_steps(step, x, y, last: int) -> dict:
    """Each twin's first step timed (the compiled one's compiling), then --last's smaller batch and 5 warm-ups."""
    first = {}
    for way in ("compiled", "eager"):
        start = time.perf_counter()
        step(way, x, y)
        first[way] = round(time.perf_counter() - start, 1)
    if last:
        step("compiled", x[:last], y[:last])
    for way in ("eager", "compiled"):
        for _ in range(5):
            step(way, x, y)
    return {"first_step_s": first["compiled"], "eager first_step_s": first["eager"]}


def main(argv=None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    torch_only = [flag for flag, value in (("--mode", args.mode), ("--dynamic", args.dynamic),
                                           ("--inductor", args.inductor), ("--kernels", args.kernels)) if value]
    if args.backend == "keras" and torch_only:
        parser.error(f"{', '.join(torch_only)} set torch.compile's options; drop them with --backend keras")
    step, x, y, threads = (keras_twins if args.backend == "keras" else torch_twins)(args)
    first = _first_steps(step, x, y, args.last)
    times = timed_pairs(step, x, y, args.pairs)
    ratio = {kind: statistics.median(c / e for c, e in zip(times["compiled"][kind], times["eager"][kind]))
             for kind in ("wall", "cpu")}
    print(json.dumps({"backend": args.backend, "model": args.model, "batch": args.batch_size, "threads": threads,
                      "options": {"mode": args.mode, "dynamic": args.dynamic, "inductor": args.inductor,
                                  "last": args.last, "bf16": args.bf16},
                      **first,
                      **{f"{way} {kind} ms": round(statistics.median(times[way][kind]), 2)
                         for way in times for kind in ("wall", "cpu")},
                      "compiled/eager wall": round(ratio["wall"], 3), "compiled/eager cpu": round(ratio["cpu"], 3)}))
    if args.kernels:
        _kernels(step, x, y)


if __name__ == "__main__":
    run_benchmark(main)
