"""A distributed keras-tuner search: trials per minute with 1 worker and with 2, on each backend.

    python -m bench.tune_workers [--backends lightning,keras] [--rounds 2] [--max-trials 6] [--max-epochs 2]
                                 [--trial-fraction 0.2] [--dataset fashion_mnist] [--seed 0]
                                 [--search-timeout 1200] [--gpus 0,1] [--workers N]

Each search is what a user runs: a fresh process of `scripts/launch_search.py` in its own session (its chief and
workers are its children; the benchmark stops them all however the search ends), with a fresh temporary --out:

    scripts/launch_search.py --workers W --threads-per-worker T --log-dir LOGS -- tune_lightning.py|tune_keras.py
        --backend B --tuner random --max-trials 6 --max-epochs 2 --trial-fraction 0.2 --dataset fashion_mnist
        --seed 0 --no-retrain --out OUT --name bench-workers [bench.tune's CPU-sized search space]

On the CPU the two ways share its cores: 1 worker with all of them (2 threads on the 2-core development machine)
against --workers workers (default 2) with cpu_count // workers threads each. With --gpus 0,1 (a GPU machine)
the ways are 1 worker on the first GPU listed against one worker per GPU listed. The same seed gives every
search the same configurations (checked: the table says so). The ways alternate in rounds, the order reversed
every other round, so a change in the machine's load hits both alike.

Read from each search: the launcher's wall time from start to end (start-up of the processes, loading the
data, the trials, the chief's end); the chief's search time, from its "serving" line to its announcement of the
end (the times at which the benchmark read those lines; the announcement comes at the latest when the chief
exits; the per-round line adds the chief's own "Search finished: ... in X min" where it prints one); the trials'
span, from the chief's first progress line with a trial running to the line where all are done (the chief
checks every second); and trials.csv (OUT/bench-workers/<backend>/tuning/trials.csv): the COMPLETED rows and
the worker that ran each trial. Trials per minute = completed trials / minutes of each of the three; the ratio
many workers / 1 worker is taken within each round, then the median over the rounds.
"""
from __future__ import annotations

import csv
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from bench.common import REPO, benchmark_parser, interleaved_rounds, run_benchmark
from bench.tune import SPACE
from core.errors import LabError

BACKENDS = ("lightning", "keras")
SCRIPT = {"lightning": "tune_lightning.py", "keras": "tune_keras.py"}
DATASETS = ("fashion_mnist", "mnist", "digits", "cifar10")
NAME = "bench-workers"
SEARCH_FINISHED = re.compile(r"Search (?:finished|stopped): (\d+) trial\(s\) run now in ([\d.]+) min")
SERVING = "chief: serving the search"
PROGRESS = re.compile(r"chief: (\d+) of (\d+) trials done, running: (.*)")


def main(argv: list[str] | None = None) -> int | None:
    parser = benchmark_parser("tune_workers", __doc__)
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"backends to time, of {', '.join(BACKENDS)} (default both)")
    parser.add_argument("--rounds", type=int, default=2, help="searches of each way per backend (default 2)")
    parser.add_argument("--max-trials", type=int, default=6, help="trials of each search (default 6)")
    parser.add_argument("--max-epochs", type=int, default=2, help="epochs of a trial (default 2)")
    parser.add_argument("--trial-fraction", type=float, default=0.2,
                        help="fraction of the training images each trial trains on (default 0.2)")
    parser.add_argument("--dataset", default="fashion_mnist", choices=DATASETS,
                        help="dataset of the search (default fashion_mnist; digits for a quick check)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every search: the same trials (default 0)")
    parser.add_argument("--workers", type=int, default=None,
                        help="workers of the many-workers way (default 2, or one per GPU with --gpus)")
    parser.add_argument("--gpus", default=None,
                        help="GPU indices, e.g. 0,1: one worker per GPU against 1 worker on the first "
                             "(default: the CPU)")
    parser.add_argument("--search-timeout", type=int, default=1200,
                        help="seconds one search may take before it is stopped (default 1200)")
    args = parser.parse_args(argv)
    backends, gpus = check_args(args)
    ways = make_ways(args, gpus)
    started = time.perf_counter()
    runs = interleaved_rounds(args.rounds, backends, ways, lambda backend, way: one_search(args, backend, way),
                              describe)
    print_table(args, ways, runs)
    print(f"\nbenchmark wall time: {time.perf_counter() - started:.0f} s")
    return None


def describe(run: dict) -> str:
    return (f"{run['completed']} of {run['rows']} trials completed ({workers_text(run['per_worker'])}), "
            f"{run['wall_s']:.0f} s wall, {per_min(run, 'wall_s'):.2f} trials/min; chief's search "
            f"{seconds(run['search_s'])}" + (f" (it says {run['chief_min']:g} min)" if run["chief_min"] is not None
                                             else "")
            + f", trials' span {seconds(run['span_s'])}; load {run['load'][0]:.1f} -> {run['load'][1]:.1f}")


def check_args(args) -> tuple[list[str], list[str]]:
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if not backends or unknown or len(set(backends)) != len(backends):
        raise LabError(f"--backends takes {' and/or '.join(BACKENDS)}, comma-separated, not {args.backends!r}.")
    gpus: list[str] = []
    if args.gpus is not None:
        if not re.fullmatch(r"\d+(,\d+)*", args.gpus.replace(" ", "")):
            raise LabError(f"--gpus must list GPU indices like 0,1, not {args.gpus!r}.")
        gpus = args.gpus.replace(" ", "").split(",")
        if len(set(gpus)) != len(gpus):
            raise LabError(f"--gpus lists a GPU twice: {args.gpus!r}.")
    if args.workers is None:
        args.workers = len(gpus) if len(gpus) > 1 else 2
    if args.workers < 2:
        raise LabError(f"--workers must be at least 2 (it is compared with 1 worker), not {args.workers}.")
    if args.rounds < 1:
        raise LabError(f"--rounds must be at least 1, not {args.rounds}.")
    if args.max_trials < args.workers:
        raise LabError(f"--max-trials ({args.max_trials}) must be at least --workers ({args.workers}): "
                       "every worker needs a trial.")
    if args.max_epochs < 1:
        raise LabError(f"--max-epochs must be at least 1, not {args.max_epochs}.")
    if not 0 < args.trial_fraction <= 1:
        raise LabError(f"--trial-fraction must be in (0, 1], not {args.trial_fraction:g}.")
    if args.search_timeout < 1:
        raise LabError(f"--search-timeout must be a positive number of seconds, not {args.search_timeout}.")
    return backends, gpus


def make_ways(args, gpus: list[str]) -> dict[str, dict]:
    """way -> the launcher's placement flags, 1 worker first."""
    if gpus:  # the launcher puts worker i on GPU i modulo their number
        placed = "+".join(gpus[i % len(gpus)] for i in range(args.workers))
        return {"1 worker": {"workers": 1, "gpus": gpus[:1], "placement": f"GPU {gpus[0]}"},
                f"{args.workers} workers": {"workers": args.workers, "gpus": gpus, "placement": f"GPUs {placed}"}}
    cores = os.cpu_count() or 1
    threads = max(1, cores // args.workers)
    return {"1 worker": {"workers": 1, "threads": cores, "placement": f"{cores} thread(s)"},
            f"{args.workers} workers": {"workers": args.workers, "threads": threads,
                                        "placement": "+".join([str(threads)] * args.workers) + " threads"}}


def launch_argv(args, backend: str, way: dict, out: Path, logs: Path) -> list[str]:
    placement = (["--gpus", ",".join(way["gpus"])] if "gpus" in way
                 else ["--threads-per-worker", str(way["threads"])])
    return [sys.executable, str(REPO / "scripts" / "launch_search.py"), "--workers", str(way["workers"]),
            *placement, "--log-dir", str(logs), "--",
            SCRIPT[backend], "--backend", backend, "--tuner", "random", "--max-trials", str(args.max_trials),
            "--max-epochs", str(args.max_epochs), "--trial-fraction", str(args.trial_fraction),
            "--dataset", args.dataset, "--seed", str(args.seed), "--no-retrain", "--out", str(out),
            "--name", NAME, *SPACE]


def one_search(args, backend: str, way: dict) -> dict:
    """One fresh launcher process in its own session, its chief's output read line by line (with the time each
    line came); the launcher, its chief and workers are stopped when it ends, however it ends."""
    with tempfile.TemporaryDirectory(prefix="bench-tune-workers-") as tmp:
        tmp = Path(tmp)
        out, logs = tmp / "runs", tmp / "logs"
        command = launch_argv(args, backend, way, out, logs)
        lines: list[tuple[float, str]] = []
        start, load = time.perf_counter(), os.getloadavg()[0]
        with open(tmp / "stderr", "w") as stderr:
            proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr,
                                    start_new_session=True)
            reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
            reader.start()
            try:
                code = proc.wait(timeout=args.search_timeout)
            except subprocess.TimeoutExpired:
                code = None
            finally:
                wall = time.perf_counter() - start
                _stop(proc)
                reader.join(timeout=10)
        if code != 0:
            raise LabError(failure(backend, way, code, args.search_timeout, (tmp / "stderr").read_text()))
        found = out / NAME / backend / "tuning" / "trials.csv"
        if not found.is_file():
            raise LabError(f"the {backend} search with {way['workers']} worker(s) left no {found.relative_to(tmp)}.")
        with open(found, newline="") as f:
            rows = list(csv.DictReader(f))
    from lab.tuning.space import NAMES

    completed = [row for row in rows if row["status"] == "COMPLETED"]
    return {"rows": len(rows), "completed": len(completed), "per_worker": Counter(row["worker"] for row in rows),
            "configurations": sorted(tuple(row.get(name, "") for name in NAMES) for row in rows),
            "wall_s": wall, "search_s": chief_search_s(lines), "span_s": trials_span_s(lines),
            "chief_min": chief_own_min(lines),
            "load": (load, os.getloadavg()[0])}


def _read_lines(stream, lines: list[tuple[float, str]]) -> None:
    for raw in iter(stream.readline, b""):
        lines.append((time.perf_counter(), raw.decode(errors="replace").rstrip()))
    stream.close()


def _children(pid: int) -> list[int]:
    """The launcher's child processes (its chief and workers, each the leader of its own session)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _stop(proc: subprocess.Popen) -> None:
    """Stop the launcher and everything it started. A launcher that has ended stopped its chief and workers
    itself; one still running gets Ctrl-C (it then stops them), then the kill, and so do their groups."""
    children = _children(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGINT)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    for group in [proc.pid, *children]:
        try:
            if group == proc.pid or os.getpgid(group) == group:
                os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


def chief_search_s(lines: list[tuple[float, str]]) -> float | None:
    """From the chief's "serving" line to its first line after its last progress line: the announcement of the
    search's end, which arrives when the chief flushes its output, at the latest when it exits."""
    serving = next((i for i, (_, line) in enumerate(lines) if line.startswith(SERVING)), None)
    last = max((i for i, (_, line) in enumerate(lines) if PROGRESS.search(line)), default=None)
    if serving is None or last is None:
        return None
    end = next((t for t, line in lines[last + 1:] if line.strip()), None)
    return end - lines[serving][0] if end is not None else None


def chief_own_min(lines: list[tuple[float, str]]) -> float | None:
    """The chief's own figure, "Search finished: N trial(s) run now in X min", when it prints one."""
    for _, line in lines:
        found = SEARCH_FINISHED.search(line)
        if found:
            return float(found.group(2))
    return None


def trials_span_s(lines: list[tuple[float, str]]) -> float | None:
    """From the chief's first progress line with a trial running to the first with every trial done."""
    progress = [(t, PROGRESS.search(line)) for t, line in lines]
    progress = [(t, m) for t, m in progress if m]
    first = next((t for t, m in progress if m.group(3) != "none"), None)
    last = next((t for t, m in progress if m.group(1) == m.group(2)), progress[-1][0] if progress else None)
    return last - first if first is not None and last is not None and last > first else None


def failure(backend: str, way: dict, code: int | None, limit: int, stderr: str) -> str:
    """One sentence about a search that failed: its error line (or its last line), or its exit code."""
    what = f"the {backend} search with {way['workers']} worker(s)"
    if code is None:
        return f"{what} took longer than --search-timeout {limit} s and was stopped."
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    last = (errors or lines or ["no message"])[-1].removeprefix("error:").strip()[:200].rstrip(" .")
    return f"{what} failed (exit code {code}): {last}."


def per_min(run: dict, key: str) -> float:
    return run["completed"] / (run[key] / 60) if run.get(key) else float("nan")


def seconds(value: float | None) -> str:
    return f"{value:.0f} s" if value is not None else "?"


def workers_text(counts: Counter) -> str:
    return ", ".join(f"{worker} {n}" for worker, n in sorted(counts.items()))


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def print_table(args, ways: dict, runs: dict) -> None:
    device = f"GPUs {args.gpus}" if args.gpus else f"the CPU ({os.cpu_count()} cores)"
    print(f"\nkeras-tuner random search on {device}: {args.max_trials} trials of at most {args.max_epochs} epoch(s) "
          f"on {args.trial_fraction:g} of {args.dataset}'s training images, seed {args.seed}, {args.rounds} round(s)")
    print(f"  {'backend':9s} {'way':10s} {'placement':14s} {'completed':>10s} {'trials/min (wall) per round':>28s} "
          f"{'wall':>7s} {'search':>7s} {'span':>7s} {'/min wall':>10s} {'/min search':>12s} {'/min span':>10s}")
    one, many = list(ways)
    for backend, by_way in runs.items():
        for way, rs in by_way.items():
            rates = "  ".join(f"{per_min(r, 'wall_s'):5.2f}" for r in rs)
            done = "/".join(str(r["completed"]) for r in rs)
            medians = {key: _median([r[key] for r in rs]) for key in ("wall_s", "search_s", "span_s")}
            rate = {key: _median([per_min(r, key) if r[key] else None for r in rs]) for key in medians}
            print(f"  {backend:9s} {way:10s} {ways[way]['placement']:14s} {done:>10s} {rates:>28s} "
                  + " ".join(f"{seconds(medians[k]):>7s}" for k in ("wall_s", "search_s", "span_s"))
                  + f" {_fmt(rate['wall_s']):>10s} {_fmt(rate['search_s']):>12s} {_fmt(rate['span_s']):>10s}")
            print(f"  {'':9s} {'':10s} trials per worker: " + "; ".join(workers_text(r["per_worker"]) for r in rs))
        for key, label in (("wall_s", "wall"), ("search_s", "chief's search time"), ("span_s", "trials' span")):
            ratios = [per_min(m, key) / per_min(o, key) for m, o in zip(by_way[many], by_way[one])
                      if m[key] and o[key]]
            if ratios:
                print(f"  {backend}: {many} / 1 worker, trials/min by {label}: "
                      + ", ".join(f"{r:.2f}x" for r in ratios) + f" per round, median {statistics.median(ratios):.2f}x")
        configurations = {tuple(r["configurations"]) for rs in by_way.values() for r in rs}
        print(f"  {backend}: the same configurations in every search: {'yes' if len(configurations) == 1 else 'NO'}")


def _fmt(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "?"


if __name__ == "__main__":
    run_benchmark(main)
