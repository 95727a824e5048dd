"""The lab report: the hand-written report's structure, a Keras part and a PyTorch part, filled from runs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lab.config.machine import describe
from lab.pipeline.plan import TITLES, describe_preset
from lab.records.results import PREDICTIONS_FILE, load_results
from lab.reports.analysis import worst_classified
from lab.reports.comparison import compare_runs, run_row
from lab.reports.report import FIGURES_DIR, markdown_table, run_sections

BACKEND_TITLES = {"keras": "Keras", "lightning": "PyTorch"}


def rel(path: Path, report_dir: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), report_dir.resolve())).as_posix()


def run_block(run_dir: Path, report_dir: Path, heading: str = "####") -> list[str]:
    """One run's tables and figures, linked from the report's folder."""
    results = load_results(run_dir)
    saved = np.load(run_dir / PREDICTIONS_FILE)
    worst = worst_classified(saved["probs"], saved["labels"], k=10)
    figures = {p.stem: rel(p, report_dir) for p in (run_dir / FIGURES_DIR).glob("*.png")}
    return run_sections(results, worst, len(saved["labels"]), results["class_names"], figures, heading)


def comparison_table(rows: list[tuple[str, dict]], with_gap: bool = False) -> str:
    """The lab's comparison table: Model, Accuracy, Time (plus epochs and parameters)."""
    columns = ["Model", "Accuracy", "Time", "Epochs", "Params"] + (["Train-val gap"] if with_gap else [])
    table = []
    for label, row in rows:
        cells = [label, f"{row['accuracy']:.2f}%", f"{row['time_s']:.2f}s", row["epochs"], f"{row['params']:,}"]
        if with_gap:
            cells.append("-" if row["gap"] is None else f"{row['gap']:+.2f} pp")
        table.append(cells)
    return markdown_table(columns, table)


def rows_for(labelled_runs: list[tuple[str, Path]]) -> list[tuple[str, dict]]:
    return [(label, run_row(run_dir, load_results(run_dir))) for label, run_dir in labelled_runs]


def versus_sentence(name: str, mine: dict, other_name: str, other: dict) -> str:
    """One sentence comparing two runs, with the numbers from the runs."""
    gap = mine["accuracy"] - other["accuracy"]
    ratio = mine["time_s"] / other["time_s"] if other["time_s"] else float("nan")
    better = "higher" if gap >= 0 else "lower"
    return (f"The {name} reaches {mine['accuracy']:.2f}% test accuracy, {abs(gap):.2f} points {better} than the "
            f"{other_name} ({other['accuracy']:.2f}%), and trains in {ratio:.2f}x its time "
            f"({mine['time_s']:.2f}s against {other['time_s']:.2f}s).")


def curves_figure(runs: list[Path], report_dir: Path, name: str) -> str:
    """Overlaid validation curves of runs (via the comparison tool), as an <img> line."""
    out = compare_runs(runs, report_dir / "comparisons" / name, allow_mixed_datasets=True)
    return f'<img src="{rel(out["curves"], report_dir)}" height="300" />'


def header(machine: dict, preset: str, data_lines: list[str]) -> list[str]:
    return ["# Deep learning for computer vision lab: Keras and PyTorch Lightning", "",
            f"Machine: {describe(machine)}", "", f"Preset {describe_preset(preset)}.", "", "Data actually used:", "",
            *data_lines, ""]


def section_heading(number: int, section: str) -> str:
    return f"## {number}. {TITLES[section]}"
