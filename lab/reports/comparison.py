"""Comparison across runs: the lab's comparison table (Markdown, CSV) and the validation curves overlaid."""
from __future__ import annotations

import csv
import io
import os
import time
from collections import Counter
from pathlib import Path

from core.errors import LabError
from core.io import write_text_atomic
from lab.records.results import RESULTS_FILE, find_runs, load_results
from lab.reports import plots
from lab.reports.commentary import ranking_comment, train_val_gap
from lab.reports.report import REPORT_FILE, markdown_table

MARKDOWN_FILE, CSV_FILE, CURVES_FILE = "comparison.md", "comparison.csv", "comparison_val_curves.png"
MD_COLUMNS = ("Model", "Backend", "Accuracy", "Time", "Epochs", "Params", "Dataset", "Experiment", "Run",
              "Train-val gap")
CSV_COLUMNS = ("Model", "Backend", "Accuracy (%)", "Time (s)", "Epochs", "Params", "Dataset", "Experiment", "Run",
               "Train-val gap (pp)")


def is_run(path: Path) -> bool:
    return (path / RESULTS_FILE).is_file()


def resolve_runs(paths) -> list[Path]:
    """Run folders named, plus the runs found under the other folders (roots), without duplicates."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise LabError(f"{path} does not exist; give run folders (holding {RESULTS_FILE}) or folders of runs.")
        found = [path] if is_run(path) else find_runs(path) if path.is_dir() else []
        if not found:
            raise LabError(f"{path} is not a run folder (it has no {RESULTS_FILE}) and holds no runs.")
        runs += [run for run in found if run.resolve() not in {r.resolve() for r in runs}]
    if not runs:
        raise LabError("No runs to compare: give run folders or folders of runs.")
    return runs


def default_out_dir(paths, name: str | None = None, cwd: Path | None = None) -> Path:
    """A single root given: that root; otherwise runs/comparisons/<name> under the current folder."""
    if len(paths) == 1 and Path(paths[0]).is_dir() and not is_run(Path(paths[0])):
        return Path(paths[0])
    return Path(cwd or Path.cwd()) / "runs" / "comparisons" / (name or time.strftime("%Y%m%d-%H%M%S"))


def check_datasets(runs: list[tuple[Path, dict]], allow_mixed: bool) -> bool:
    """True when the runs use several datasets, which must be allowed explicitly."""
    by_dataset: dict[str, list[str]] = {}
    for run_dir, results in runs:
        by_dataset.setdefault(str(results["dataset"]), []).append(str(run_dir))
    if len(by_dataset) > 1 and not allow_mixed:
        listed = "; ".join(f"{d}: {', '.join(dirs)}" for d, dirs in by_dataset.items())
        raise LabError(f"The runs use different datasets ({listed}), so their accuracies do not compare; "
                       "compare runs of one dataset or pass --allow-mixed-datasets.")
    return len(by_dataset) > 1


def run_row(run_dir: Path, results: dict) -> dict:
    try:
        return {"model": str(results["model"]), "backend": str(results["backend"]),
                "accuracy": 100 * float(results["test"]["accuracy"]), "time_s": float(results["timing"]["total_s"]),
                "epochs": int(results["epochs_run"]), "params": int(results["params"]["total"]),
                "dataset": str(results["dataset"]), "experiment": str(results["experiment"]), "run_dir": run_dir,
                "history": [{"epoch": int(h["epoch"]), "val/acc": h.get("val/acc"), "val/loss": h.get("val/loss")}
                            for h in results["history"]],
                "gap": train_val_gap(results["history"])}
    except (KeyError, TypeError, ValueError) as e:
        raise LabError(f"{run_dir / RESULTS_FILE} has an unexpected layout ({type(e).__name__}: {e}); "
                       "rerun that experiment or leave that folder out.") from None


def format_gap(gap: float | None, unit: str = "") -> str:
    return "-" if gap is None else f"{gap:+.2f}{unit}"


def _link(run_dir: Path, out_dir: Path) -> str:
    target = run_dir / REPORT_FILE if (run_dir / REPORT_FILE).is_file() else run_dir
    return f"[{run_dir.name}]({Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix()})"


def markdown(rows: list[dict], out_dir: Path, mixed: bool) -> str:
    def table(group):
        return markdown_table(MD_COLUMNS, [(r["model"], r["backend"], f"{r['accuracy']:.2f}%", f"{r['time_s']:.2f}s",
                                            r["epochs"], f"{r['params']:,}", r["dataset"], r["experiment"],
                                            _link(r["run_dir"], out_dir), format_gap(r["gap"], " pp")) for r in group])
    def comment(group):  # one run each: the spread is unknown, and the sentence says so
        text = ranking_comment([(f"{r['experiment']} / {r['backend']} ({r['run_dir'].name})", r) for r in group])
        return ["", text] if text else []
    lines = [f"# Comparison of {len(rows)} runs", ""]
    if not mixed:
        return "\n".join(lines + [table(rows), *comment(rows)]) + "\n"
    lines += ["**Mixed datasets**: accuracies compare only within one dataset's table.", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        group = [r for r in rows if r["dataset"] == dataset]
        lines += [f"## Dataset: {dataset}", "", table(group), *comment(group), ""]
    return "\n".join(lines)


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([r["model"], r["backend"], f"{r['accuracy']:.2f}", f"{r['time_s']:.2f}", r["epochs"],
                         r["params"], r["dataset"], r["experiment"], r["run_dir"].as_posix(), format_gap(r["gap"])])
    return buf.getvalue()


def curve_labels(rows: list[dict], mixed: bool) -> list[str]:
    """'experiment / backend' (plus [dataset] when mixed); the run folder's name where that is not unique."""
    labels = [f"{r['experiment']} / {r['backend']}" + (f" [{r['dataset']}]" if mixed else "") for r in rows]
    counts = Counter(labels)
    return [f"{label} ({r['run_dir'].name})" if counts[label] > 1 else label for label, r in zip(labels, rows)]


def compare_runs(paths, out_dir, allow_mixed_datasets: bool = False) -> dict:
    """Compare the runs at paths (run folders or roots of runs); write the three files into out_dir.

    Returns {"runs": [run folders], "markdown": Path, "csv": Path, "curves": Path}.
    """
    out_dir = Path(out_dir)
    runs = [(run_dir, load_results(run_dir)) for run_dir in resolve_runs(paths)]
    rows = [run_row(run_dir, results) for run_dir, results in runs]
    mixed = check_datasets(runs, allow_mixed_datasets)
    if mixed:  # grouped by dataset, first-seen order, so tables and CSV read alike
        order = list(dict.fromkeys(r["dataset"] for r in rows))
        rows.sort(key=lambda r: order.index(r["dataset"]))
    figure = plots.val_curves_figure(list(zip(curve_labels(rows, mixed), (r["history"] for r in rows))))
    plots.save_png(figure, out_dir / CURVES_FILE)
    return {"runs": [r["run_dir"] for r in rows],
            "markdown": write_text_atomic(out_dir / MARKDOWN_FILE, markdown(rows, out_dir, mixed)),
            "csv": write_text_atomic(out_dir / CSV_FILE, csv_text(rows)),
            "curves": out_dir / CURVES_FILE}
