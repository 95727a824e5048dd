#!/usr/bin/env python
"""Start one keras-tuner search on this machine as a chief and N workers: plain tune_keras.py / tune_lightning.py
processes, told their part by keras-tuner's own variables (KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP,
KERASTUNER_ORACLE_PORT). This script only sets those, gives each worker its GPU or its CPU threads, and stops
every process it started when the chief ends or on Ctrl-C; the search itself is keras-tuner's.

    python scripts/launch_search.py --workers 2 -- tune_keras.py --dataset fashion_mnist --max-trials 20
    python scripts/launch_search.py --workers 4 --gpus 0,1,2,3 -- tune_lightning.py --dataset cifar10 ...

On a cluster, start the same processes with the same variables yourself: scripts/search_slurm.sbatch.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as scripts/launch_search.py: the project's packages are beside scripts/
    sys.path.insert(0, str(ROOT))
from core import processes  # noqa: E402  (only core, the ground package: nothing of the lab)

SCRIPTS = ("tune_keras.py", "tune_lightning.py")
READY = "ready, waiting for the chief"  # a worker's line once it can take trials (lab.tuning.cluster.READY)


class Refusal(Exception):
    """Bad input: one sentence, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="launch_search.py", description=__doc__.split("\n\n")[0],
                                     usage="%(prog)s [options] -- tune_keras.py|tune_lightning.py [search flags]")
    parser.add_argument("--workers", type=int, default=2, help="worker processes that train trials (default: 2)")
    parser.add_argument("--gpus", default=None,
                        help="GPU indices, e.g. 0,1: worker i trains on GPU i modulo their number "
                             "(CUDA_VISIBLE_DEVICES); default: the workers share the CPU")
    parser.add_argument("--threads-per-worker", type=int, default=None,
                        help="CPU threads of each worker (default: the CPU's cores divided among the workers)")
    parser.add_argument("--ip", default="127.0.0.1", help="address the chief serves on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port the chief serves on (default: a free one)")
    parser.add_argument("--log-dir", default=None,
                        help="folder for the workers' output, one file each (default: a new temporary folder)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the search: tune_keras.py or tune_lightning.py "
                                                                  "and its flags, after --")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        command, gpus = _check(args)
        return _launch(args, command, gpus)
    except Refusal as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _check(args) -> tuple[list[str], list[str]]:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or Path(command[0]).name not in SCRIPTS:
        raise Refusal("give the search after --, e.g. -- tune_keras.py --dataset digits --max-trials 8.")
    if args.workers < 1:
        raise Refusal(f"--workers must be at least 1, got {args.workers}.")
    if any(flag in command for flag in ("--overwrite",)):
        raise Refusal("--overwrite would let every worker delete the search folder; delete it yourself first.")
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    if args.gpus is not None and not gpus:
        raise Refusal(f"--gpus must list GPU indices like 0,1, got {args.gpus!r}.")
    return command, gpus


def _launch(args, command: list[str], gpus: list[str]) -> int:
    port = args.port or _free_port(args.ip)
    logs = Path(args.log_dir or tempfile.mkdtemp(prefix="search-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    threads = args.threads_per_worker or processes.cpu_share(args.workers)
    script = [sys.executable, str(ROOT / Path(command[0]).name), *command[1:]]
    base = {**os.environ, "KERASTUNER_ORACLE_IP": args.ip, "KERASTUNER_ORACLE_PORT": str(port)}
    started: list[subprocess.Popen] = []
    try:
        print(f"launch_search: chief on {args.ip}:{port}; {args.workers} worker(s), output in {logs}", flush=True)
        for i in range(args.workers):  # first: once all are ready, they ask the chief together
            env = {**base, "KERASTUNER_TUNER_ID": f"tuner{i}", **processes.placement(i, gpus, threads)}
            started.append(processes.start(script, env, logs / f"tuner{i}.log"))
        processes.wait_ready(started, [logs / f"tuner{i}.log" for i in range(args.workers)], READY)
        chief = processes.start(script, {**base, "KERASTUNER_TUNER_ID": "chief"}, None)
        started.append(chief)
        code = chief.wait()
        _wait_workers(started[:-1], logs)
        return code
    except KeyboardInterrupt:
        print("launch_search: interrupted; stopping the search (run the same command to continue it)",
              file=sys.stderr)
        return 130
    finally:
        processes.kill_all([p for p in started if p.poll() is None])


def _wait_workers(workers: list[subprocess.Popen], logs: Path, grace: float = 60) -> None:
    """The workers end on their own once the chief told them the search is over; those that do not are stopped."""
    deadline = time.monotonic() + grace
    for i, worker in enumerate(workers):
        try:
            code = worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            continue  # killed in _launch's finally
        if code != 0:
            print(f"launch_search: worker tuner{i} ended with code {code}; see {logs / f'tuner{i}.log'}",
                  file=sys.stderr)


def _free_port(ip: str) -> int:
    try:
        return processes.free_port(ip)
    except OSError as e:
        raise Refusal(f"cannot serve on {ip} ({e.strerror}); give --ip an address of this machine.") from None


if __name__ == "__main__":
    sys.exit(main())
