"""Peak: this machine's matmul GFLOP/s in float32 and bf16 in torch and TensorFlow, and finished runs' share of it.

    python -m bench.peak [--size 2048] [--repeats 5] [--threads N] [--frameworks torch,tensorflow]
                         [--out runs/lab/peak.json] [--runs DIR ...]

Each framework is measured in a fresh process (core.matmul_peak): the best of --repeats products of two --size x --size
matrices after one untimed, GFLOP/s = 2 n^3 / seconds; bf16 only where the CPU has bf16 units (core.cpu_bf16).
--threads: the compute threads of each process (default: each framework's own, as a run of the lab has them).
--out writes the lab's peak file (lab.reports.peak_share), so that `run_lab.py --out runs/lab` reuses it. --runs: the
finished runs under those folders, each with its achieved training GFLOP/s and share of the peak in its
precision (model FLOPs utilisation), over its epochs and over its profiled training step alone.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import benchmark_parser, run_benchmark
from core.errors import LabError
from core.matmul_peak import FRAMEWORKS
from lab.records.results import achieved_gflops, find_runs, load_results
from lab.reports.peak_share import PEAK_REPEATS, PEAK_SIZE, machine_peak, share_of_peak, share_text
from lab.reports.report import markdown_table


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser("peak", __doc__)
    p.add_argument("--size", type=int, default=PEAK_SIZE, help=f"matrix side (default {PEAK_SIZE})")
    p.add_argument("--repeats", type=int, default=PEAK_REPEATS, help=f"timed products (default {PEAK_REPEATS})")
    p.add_argument("--threads", type=int, help="compute threads per process (default: the framework's own)")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated: torch, tensorflow")
    p.add_argument("--out", help="also write the peak to this file, in the lab's format (e.g. runs/lab/peak.json)")
    p.add_argument("--runs", nargs="*", default=[], help="folders of finished runs: their share of the peak")
    args = p.parse_args(argv)
    frameworks = _frameworks(args.frameworks)
    if args.size < 1 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        raise LabError("--size, --repeats and --threads must be positive; e.g. --size 2048 --repeats 5.")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.out or Path(tmp) / "peak.json")
        peak = machine_peak(path, frameworks, args.size, args.repeats, args.threads, reuse=False)
    print(peak_table(peak, args.size, args.repeats))
    if args.runs:
        print("\n" + share_table([run for root in args.runs for run in find_runs(root)], peak))
    return 1 if any(isinstance(entry, str) for entry in peak.values()) else 0


def _frameworks(text: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    bad = [name for name in chosen if name not in FRAMEWORKS]
    if bad or not chosen:
        raise LabError(f"--frameworks takes {' and '.join(FRAMEWORKS)}, comma-separated, not {text!r}.")
    return chosen


def peak_table(peak: dict, size: int, repeats: int) -> str:
    rows = []
    for framework, entry in peak.items():
        if isinstance(entry, str):
            rows.append([framework, "-", "-", f"failed: {entry}", "-"])
            continue
        figures = [f"{entry['gflops'][d]:,.1f}" if d in entry["gflops"] else "no bf16 units" for d in
                   ("float32", "bfloat16")]
        rows.append([framework, entry["version"], entry["threads"], *figures])
    return (f"matmul peak, {size}x{size} matrices, best of {repeats}, GFLOP/s:\n"
            + markdown_table(("framework", "version", "threads", "float32", "bfloat16"), rows))


def share_table(runs: list[Path], peak: dict) -> str:
    """Each finished run's training throughput against the peak of its framework in its precision: over its
    epochs (what the lab report shows, validation included) and over its profiled training step alone."""
    rows = []
    for run in runs:
        results = load_results(run)
        hp, gflops = results["hyperparameters"], achieved_gflops(results)
        rows.append([results["backend"], results["model"], hp.get("precision", "32"), hp.get("batch_size"),
                     f"{results['timing'].get('images_per_s') or 0:,.0f}",
                     "-" if gflops is None else f"{gflops:,.2f}", share_text(share_of_peak(results, peak)),
                     share_text(share_of_peak(_in_step(results), peak)), run])
    return markdown_table(("backend", "model", "precision", "batch", "images/s", "GFLOP/s", "share of peak",
                           "in the profiled step", "run"), rows)


def _in_step(results: dict) -> dict:
    """The results as if the run had trained at its profiled step's speed (results.json "profile": the in-loop
    step, without the data loading between epochs and the validation pass); images/s None without a profile."""
    step_ms = (results.get("profile") or {}).get("step_ms")
    rate = None if not step_ms else results["hyperparameters"]["batch_size"] / (step_ms / 1000)
    return {**results, "timing": {**results["timing"], "images_per_s": rate}}


if __name__ == "__main__":
    run_benchmark(main)
