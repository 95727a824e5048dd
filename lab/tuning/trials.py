"""What a search leaves behind, for either backend: a trial's metrics, trials.csv, the best-trials summary.

Trials are read duck-typed from keras-tuner (trial_id, status, hyperparameters.values, metrics,
message), so this module imports neither keras-tuner nor a framework.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from core.io import write_text_atomic
from lab.records.recording import best_row
from lab.reports.report import markdown_table
from lab.tuning.space import NAMES

PROJECT = "tuning"  # OUT/<name>/<backend>/tuning: keras-tuner's state, the trial folders, these files
CSV_FILE, SUMMARY_FILE = "trials.csv", "summary.md"
ORACLE_FILE = "oracle.json"  # keras-tuner's saved oracle, in the project folder
OBJECTIVE = "val_acc"
METRICS = ("val_acc", "val_loss", "best_epoch", "epochs_run", "time_s", "params")
INT_METRICS = ("best_epoch", "epochs_run", "params")
BEST_COLUMNS = ("Rank", "Trial", "Val acc", "Epochs", "Time", "Params", "Blocks", "Filters", "Kernel", "Padding",
                "BN", "Pool", "Dropout", "Dense", "Optimizer", "LR", "Batch")


def trial_metrics(history: list[dict], initial_epoch: int, params: int) -> dict:
    """A trial's result from its epoch history: the best validation epoch among those it trained
    (a Hyperband continuation also holds its parent's epochs, up to initial_epoch)."""
    own = [row for row in history if row["epoch"] > initial_epoch] or history[-1:]
    best = best_row(own)
    return {"val_acc": best["val/acc"], "val_loss": best["val/loss"], "best_epoch": best["epoch"],
            "epochs_run": len(own), "time_s": round(sum(row["time/epoch_s"] for row in own), 3), "params": params}


def untaken_trials(folder: Path, max_trials: int) -> tuple[int, set[str]]:
    """The search in `folder` as its oracle was last saved (keras-tuner saves it whenever a trial begins or
    ends): how many trials no worker holds (not begun yet, or back in the retry queue), and the IDs of the
    workers that hold one. (0, set()) before the first save."""
    try:
        state = json.loads((folder / ORACLE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return 0, set()
    begun = len(set(state.get("start_order", [])))
    untaken = max(0, max_trials - begun) + len(state.get("retry_queue", []))
    return untaken, set(state.get("ongoing_trials", {}))


def trial_row(trial, backend: str, worker: str, retried=()) -> dict:
    """retried: the workers that fell silent while training it, before `worker` trained it again."""
    metrics = {name: trial.metrics.get_last_value(name) for name in METRICS if trial.metrics.exists(name)}
    metrics.update({name: int(metrics[name]) for name in INT_METRICS if name in metrics})  # keras-tuner keeps floats
    message = (trial.message or "").strip().splitlines()
    return {"trial": trial.trial_id, "backend": backend, "worker": worker, "retried": " ".join(retried),
            "status": trial.status,
            **trial.hyperparameters.values,
            **metrics, "message": message[-1] if message else ""}


def csv_text(rows: list[dict]) -> str:
    """Every trial, one line each: id, backend, the worker that ran it (that finished it), the workers that fell
    silent while training it (empty: none), status, every hyperparameter, its metrics, why it failed."""
    extra = sorted({key for row in rows for key in row if key.startswith("tuner/")})
    columns = ["trial", "backend", "worker", "retried", "status", *NAMES, *extra, *METRICS, "message"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(rows: list[dict], folder: Path) -> Path:
    return write_text_atomic(folder / CSV_FILE, csv_text(rows))


def best_rows(rows: list[dict], top: int) -> list[dict]:
    done = [row for row in rows if row["status"] == "COMPLETED" and row.get(OBJECTIVE) is not None]
    return sorted(done, key=lambda row: -row[OBJECTIVE])[:top]


def _cells(rank: int, row: dict) -> list[str]:
    yes_no = {True: "yes", False: "no"}
    start = row.get("tuner/initial_epoch") or 0  # a Hyperband continuation: its parent's epochs + its own
    epochs = f"{start}+{row['epochs_run']}" if start else str(row["epochs_run"])
    return [str(rank), row["trial"], f"{100 * row['val_acc']:.2f}%", epochs, f"{row['time_s']:.1f}s",
            f"{row['params']:,}", str(row["blocks"]), str(row["filters"]), str(row["kernel_size"]), row["padding"],
            yes_no[row["batch_norm"]], yes_no[row["pool"]], f"{row['dropout']:g}", str(row["dense_units"]),
            row["optimizer"], f"{row['lr']:g}", str(row["batch_size"])]


def configuration(row: dict) -> str:
    """A trial's configuration in one line, e.g. '2 conv blocks from 32 filters, 3x3 same, BN, pool, ...'."""
    k, blocks = row["kernel_size"], row["blocks"]
    return ", ".join([f"{blocks} conv block{'s' if blocks > 1 else ''} from {row['filters']} filters",
                      f"{k}x{k} {row['padding']}",
                      *(["BN"] if row["batch_norm"] else []), "pool" if row["pool"] else "no pool",
                      f"dropout {row['dropout']:g}", f"dense {row['dense_units']}",
                      f"{row['optimizer']} lr {row['lr']:g}", f"batch {row['batch_size']}"])


def print_best(rows: list[dict], top: int, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*BEST_COLUMNS[:6], "Configuration", title=title)
    for rank, row in enumerate(best_rows(rows, top), 1):
        table.add_row(*_cells(rank, row)[:6], configuration(row))
    Console().print(table)


def best_table(rows: list[dict], top: int) -> str:
    """The best trials as a Markdown table, ranked by their best validation accuracy."""
    return markdown_table(BEST_COLUMNS, [_cells(rank, row) for rank, row in enumerate(best_rows(rows, top), 1)])


def trial_counts(rows: list[dict]) -> str:
    """E.g. '5 completed, 1 failed'."""
    statuses = dict.fromkeys(row["status"] for row in rows)
    counts = {status: sum(row["status"] == status for row in rows) for status in statuses}
    return ", ".join(f"{n} {status.lower()}" for status, n in counts.items())


def summary_markdown(rows: list[dict], top: int, header: list[str], footer: list[str]) -> str:
    lines = [*header, "", f"Trials: {trial_counts(rows)} (all of them in [{CSV_FILE}]({CSV_FILE})).", "",
             f"## The {len(best_rows(rows, top))} best trials", "", "Ranked by their best validation accuracy.", "",
             best_table(rows, top), ""]
    return "\n".join(lines + footer) + "\n"
