"""The machine's matmul peak as the lab report uses it, and a run's share of it (model FLOPs utilisation).

The peak (core.matmul_peak: a large square matmul per framework, each in a fresh process) takes some 20 s to measure,
so the lab keeps it in OUT/peak.json, written atomically by the lab's one process, and measures again only when
what it depends on changed: the CPU, the thread settings of the environment, the framework's release, the matrix
size and repeats (`peak_key`). Each entry keeps when it was measured; the report says so.
"""
from __future__ import annotations

import json
import os
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

from core.io import write_json_atomic
from core.matmul_peak import measure_fresh
from lab.config.machine import cpu_model
from lab.records.results import achieved_gflops

PEAK_FILE = "peak.json"
PEAK_SIZE, PEAK_REPEATS = 2048, 5
FRAMEWORK_OF = {"lightning": "torch", "keras": "tensorflow"}
DTYPE_OF = {"32": "float32", "bf16-mixed": "bfloat16"}  # 16-mixed trains on a GPU only: no CPU peak
THREAD_VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def peak_key(framework: str, size: int = PEAK_SIZE, repeats: int = PEAK_REPEATS, threads: int | None = None) -> dict:
    """What a cached peak is valid for; threads None: the framework's default under the environment's settings."""
    try:
        version = metadata.version("torch" if framework == "torch" else "tensorflow")
    except metadata.PackageNotFoundError:  # its measurement then fails and says so
        version = None
    return {"framework": framework, "version": version, "cpu": cpu_model(), "cores": os.cpu_count(),
            "threads": threads, "threads_env": {v: os.environ.get(v) for v in THREAD_VARIABLES}, "size": size,
            "repeats": repeats}


def machine_peak(path: Path, frameworks, size: int = PEAK_SIZE, repeats: int = PEAK_REPEATS,
                 threads: int | None = None, reuse: bool = True, measure: Callable = measure_fresh
                 ) -> dict[str, dict | str]:
    """framework -> its peak entry (core.matmul_peak.measure's result with "key" and "measured_at"), from the file at
    path when reuse and its key matches, else measured now and saved there (written atomically, other
    frameworks' entries kept); a framework that could not be measured -> the reason."""
    cached = _read(Path(path))
    found: dict[str, dict | str] = {}
    for framework in frameworks:
        key = peak_key(framework, size, repeats, threads)
        entry = next((e for e in cached if e.get("key") == key), None) if reuse else None
        if entry is None:
            try:
                entry = {**measure(framework, size, repeats, threads), "key": key,
                         "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            except RuntimeError as e:
                found[framework] = str(e)
                continue
            cached = [e for e in cached if e.get("key", {}).get("framework") != framework] + [entry]
            write_json_atomic(path, {"schema": 1, "peaks": cached})
        found[framework] = entry
    return found


def _read(path: Path) -> list[dict]:
    """The cached entries; none from a missing or unreadable file (it is measured again)."""
    try:
        peaks = json.loads(path.read_text()).get("peaks")
    except (OSError, ValueError, AttributeError):
        return []
    return [e for e in peaks if isinstance(e, dict)] if isinstance(peaks, list) else []


def share_of_peak(results: dict, peak: dict[str, dict | str] | None) -> float | None:
    """Achieved training GFLOP/s over the peak of the run's framework in its precision; None where either is
    unknown: a run without FLOPs or images/s, one trained off the CPU or in a precision without a peak."""
    entry = (peak or {}).get(FRAMEWORK_OF.get(results.get("backend")))
    dtype = DTYPE_OF.get(str(results.get("hyperparameters", {}).get("precision", "32")))
    achieved = achieved_gflops(results)
    if not isinstance(entry, dict) or dtype is None or achieved is None:
        return None
    if not str(results.get("device", "")).startswith("cpu"):
        return None
    top = entry["gflops"].get(dtype)
    return None if not top else achieved / top


def share_text(share: float | None) -> str:
    return "not measured" if share is None else f"{100 * share:.2g}%" if share < 0.1 else f"{100 * share:.0f}%"


def peak_lines(peak: dict[str, dict | str]) -> list[str]:
    """The report's paragraph: the peak's figures, where they came from and when, and how to read the share."""
    parts = []
    for framework, entry in peak.items():
        if isinstance(entry, str):
            parts.append(f"{framework}: not measured ({entry})")
            continue
        figures = ", ".join(f"{g:,.0f} GFLOP/s in {dtype}" for dtype, g in entry["gflops"].items())
        parts.append(f"{framework} {entry['version']} {figures} on {entry['threads']} thread(s) (best of "
                     f"{entry['repeats']} products of two {entry['size']}x{entry['size']} matrices), measured "
                     f"{entry['measured_at']}")
    return [f"Share of peak: a run's training GFLOP/s (3x its forward FLOPs per image, times its images per second) "
            "over this machine's matmul peak in the run's precision, measured in a fresh process per framework "
            f"(`python -m bench.peak`'s measure, kept in {PEAK_FILE} beside this report): {'; '.join(parts)}. "
            "Small networks at batch 32 sit far below it: their matrix products are too small to keep the vector "
            "units busy, and the framework's loop, the data pipeline, the element-wise layers and the validation pass "
            "(in the epoch's time) do no counted FLOPs.", ""]
