"""This machine's matrix-multiply peak: the GFLOP/s of a large square matmul in one framework, best of several.

A product of two n x n matrices is n^3 multiply-adds, 2 n^3 FLOPs (the FLOP definition of lab.specs.architectures).
Each framework is measured in a fresh process of its own (`measure_fresh` runs `python -m core.matmul_peak`), as
a run has it: its default threads unless told, TensorFlow loaded after torch (core.frameworks). bfloat16 is
measured only where the CPU has bf16 units (core.cpu_bf16), float32 always. Callers: bench/peak.py (the command)
and lab/records/peak.py (the lab report's cached peak).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from core.io import write_json_atomic

FRAMEWORKS = ("torch", "tensorflow")
DTYPES = ("float32", "bfloat16")
ROOT = Path(__file__).resolve().parents[1]


def gflops(size: int, seconds: float) -> float:
    """GFLOP/s of one size x size by size x size product that took `seconds`: 2 n^3 FLOPs."""
    return 2 * size**3 / seconds / 1e9


def best_time(run: Callable[[], None], repeats: int, warmup: int = 1,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """The shortest of `repeats` timed calls of run, after `warmup` untimed ones: on a shared machine the best
    call is the one least disturbed."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = clock()
        run()
        times.append(clock() - start)
    return min(times)


def measure(framework: str, size: int, repeats: int, threads: int | None = None,
            clock: Callable[[], float] = time.perf_counter) -> dict:
    """This process's peak in `framework`: {"framework", "version", "threads", "size", "repeats",
    "gflops": {dtype: GFLOP/s}}; threads None: the framework's default."""
    from core.cpu_bf16 import cpu_has_bf16

    matmul, version, used = (_torch if framework == "torch" else _tensorflow)(threads)
    dtypes = DTYPES if cpu_has_bf16() else DTYPES[:1]
    found = {dtype: gflops(size, best_time(matmul(size, dtype), repeats, clock=clock)) for dtype in dtypes}
    return {"framework": framework, "version": version, "threads": used, "size": size, "repeats": repeats,
            "gflops": found}


def _torch(threads: int | None):
    import torch

    if threads:
        torch.set_num_threads(threads)

    def matmul(size: int, dtype: str) -> Callable[[], None]:
        a, b = (torch.randn(size, size).to(getattr(torch, dtype)) for _ in range(2))
        return lambda: torch.matmul(a, b)

    return matmul, torch.__version__, torch.get_num_threads()


def _tensorflow(threads: int | None):
    from core.frameworks import tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    # TensorFlow's default intra-op pool: TF_NUM_INTRAOP_THREADS, else one thread per core this process may use
    used = threads or int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or len(os.sched_getaffinity(0))

    def matmul(size: int, dtype: str) -> Callable[[], None]:
        a, b = (tf.cast(tf.random.normal((size, size)), dtype) for _ in range(2))
        return lambda: tf.linalg.matmul(a, b)[0, 0].numpy()  # eager on the CPU: .numpy() of one entry waits

    return matmul, tf.__version__, used


def measure_fresh(framework: str, size: int, repeats: int, threads: int | None = None,
                  timeout_s: float = 300) -> dict:
    """measure() in a new process (its own process group, killed whole if it overruns `timeout_s`);
    RuntimeError with the end of its output if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "peak.json"
        argv = [sys.executable, "-m", "core.matmul_peak", framework, *map(str, (size, repeats, threads or 0, result))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, text=True)
        try:
            output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the {framework} matmul took over {timeout_s:.0f} s") from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.returncode:
            raise RuntimeError(f"the {framework} matmul failed (exit {proc.returncode}): {output.strip()[-300:]}")
        return json.loads(result.read_text())


def _child(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description="measure_fresh's child: writes measure()'s result as JSON")
    p.add_argument("framework", choices=FRAMEWORKS)
    for name in ("size", "repeats", "threads"):
        p.add_argument(name, type=int)
    p.add_argument("out")
    args = p.parse_args(argv)
    found = measure(args.framework, args.size, args.repeats, args.threads or None)
    write_json_atomic(args.out, found)


if __name__ == "__main__":
    _child(sys.argv[1:])
