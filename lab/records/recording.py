"""What both backends' epoch callbacks record: per-epoch metrics and timing, with one definition.

Epoch time runs from the start of an epoch's training to the end of its validation, read after
the accelerator has finished its work. Training time ("Time" in the lab's tables) is the sum of
the epoch times; the first epoch (warm-up, graph building) is also reported apart, and the
steady epoch time is the median of the others.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from core.io import write_json_atomic

EPOCH_TAGS = ("train/loss", "train/acc", "val/loss", "val/acc", "time/epoch_s")
RECORD_FILE = "record.json"


def best_row(history: list[dict], after: int = 0) -> dict | None:
    """The history row after epoch `after` with the highest val/acc, the earliest of equals (None if none has
    one): the epoch both backends' best checkpoints hold, as they replace it only on a strictly better val/acc.
    The one rule for the tested weights, the reports' comments and the tuner's trial results."""
    rows = [r for r in history if r["epoch"] > after and r.get("val/acc") is not None]
    return max(rows, key=lambda r: (r["val/acc"], -r["epoch"])) if rows else None


def best_epoch(history: list[dict], after: int = 0) -> int | None:
    row = best_row(history, after)
    return None if row is None else row["epoch"]


class RunRecord:
    """History and timing of one run, persisted after every epoch so a resumed run continues it (by the process
    that writes the run's files: persist=False on the other ranks of a multi-process run)."""

    def __init__(self, run_dir: str | Path, train_images: int, persist: bool = True):
        self.path, self.persist = Path(run_dir) / RECORD_FILE, persist
        self.train_images = train_images
        self.history: list[dict] = []
        self._started: float | None = None

    def start_epoch(self) -> None:
        self._started = time.perf_counter()

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> dict:
        """epoch is 1-based. Returns the row written, tags EPOCH_TAGS plus 'epoch'."""
        elapsed = time.perf_counter() - self._started
        row = {"epoch": epoch, **{tag: float(metrics[tag]) for tag in EPOCH_TAGS[:-1]}, "time/epoch_s": elapsed}
        self.history = [r for r in self.history if r["epoch"] < epoch] + [row]
        if self.persist:
            write_json_atomic(self.path, {"train_images": self.train_images, "history": self.history})
        return row

    def restore(self, epochs_done: int) -> None:
        """Reload the history of a resumed run, keeping the epochs its checkpoint holds."""
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            self.history = [r for r in saved["history"] if r["epoch"] <= epochs_done]

    def timing(self, compiled: bool = False) -> dict:
        """compiled (--compile): compile_s is the first epoch's time beyond a steady epoch, where the compiling
        happens (with the warm-up an eager run has too); None with a single epoch, which cannot tell them apart."""
        times = [r["time/epoch_s"] for r in self.history]
        compile_s = round(times[0] - statistics.median(times[1:]), 3) if compiled and len(times) > 1 else None
        if not times:
            return {"total_s": 0.0, "first_epoch_s": None, "steady_epoch_s": None, "epoch_s": [], "images_per_s": None,
                    "compiled": compiled, "compile_s": None}
        steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
        return {
            "total_s": round(sum(times), 3),
            "first_epoch_s": round(times[0], 3),
            "steady_epoch_s": round(steady, 3),
            "epoch_s": [round(t, 3) for t in times],
            "images_per_s": round(self.train_images / steady, 1) if steady > 0 else None,
            "compiled": compiled,
            "compile_s": compile_s,
        }
