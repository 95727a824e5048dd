"""The lab report: the hand-written report's structure, a Keras part and a PyTorch part, filled from runs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lab.config.machine import describe
from lab.pipeline.plan import BASELINES, SECTIONS, TITLES, describe_preset, spread_key
from lab.records.results import PREDICTIONS_FILE, load_results
from lab.reports import commentary
from lab.reports.analysis import confusion_counts, worst_classified
from lab.reports.commentary import Spread, seed_spread
from lab.reports.comparison import compare_runs, run_row
from lab.reports.report import FIGURES_DIR, flops_text, markdown_table, run_sections

BACKEND_TITLES = {"keras": "Keras", "lightning": "PyTorch"}


def rel(path: Path, report_dir: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), report_dir.resolve())).as_posix()


def run_block(run_dir: Path, report_dir: Path, heading: str = "####") -> list[str]:
    """One run's tables and figures, linked from the report's folder."""
    results = load_results(run_dir)
    saved = np.load(run_dir / PREDICTIONS_FILE)
    worst = worst_classified(saved["probs"], saved["labels"], k=10)
    counts = confusion_counts(saved["probs"], saved["labels"], len(results["class_names"]))
    figures = {p.stem: rel(p, report_dir) for p in (run_dir / FIGURES_DIR).glob("*.png")}
    return run_sections(results, worst, len(saved["labels"]), results["class_names"], figures, heading, counts)


def comparison_table(rows: list[tuple[str, dict]], with_gap: bool = False) -> str:
    """The lab's comparison table: Model, Accuracy, Time (plus epochs, parameters and forward FLOPs per image)."""
    columns = ["Model", "Accuracy", "Time", "Epochs", "Params", "FLOPs per image"] + (
        ["Train-val gap"] if with_gap else [])
    table = []
    for label, row in rows:
        cells = [label, f"{row['accuracy']:.2f}%", f"{row['time_s']:.2f}s", row["epochs"], f"{row['params']:,}",
                 flops_text(row.get("flops"))]
        if with_gap:
            cells.append("-" if row["gap"] is None else f"{row['gap']:+.2f} pp")
        table.append(cells)
    return markdown_table(columns, table)


def rows_for(labelled_runs: list[tuple[str, Path]]) -> list[tuple[str, dict]]:
    return [(label, _with_flops(run_dir, load_results(run_dir))) for label, run_dir in labelled_runs]


def _with_flops(run_dir: Path, results: dict) -> dict:
    return {**run_row(run_dir, results), "flops": results.get("flops_per_image")}


def versus_sentence(name: str, mine: dict, other_name: str, other: dict, spread: Spread | None = None) -> str:
    """One sentence comparing two runs (comparison rows), with the numbers from the runs; name and
    other_name without their article, e.g. "first CNN"."""
    return commentary.versus_sentence(f"the {name}", mine, f"the {other_name}", other, spread)


def seed_pairs(runs: dict, section: str) -> dict[str, tuple[dict, dict]]:
    """backend -> (the section's baseline results, those of its run with the next seed), where the lab has both."""
    baseline, again = BASELINES[section], spread_key(section)
    pairs = {}
    for backend, sections in runs.items():
        done = sections.get(section, {})
        if baseline in done and again in done:
            pairs[backend] = (load_results(done[baseline]), load_results(done[again]))
    return pairs


def section_spreads(runs: dict, sections: list[str]) -> dict[str, Spread]:
    """Each section's run-to-run spread (section_spread), by section name."""
    return {section: section_spread(runs, section) for section in sections}


def section_spread(runs: dict, section: str) -> Spread:
    """A section's run-to-run spread: the largest change of test accuracy, over the backends, that the next seed
    makes to the section's baseline (lab.reports.commentary.seed_spread); unknown, and why, without those runs
    (--no-spread-seed, or a lab made before each section had its own). The seed also draws the validation split
    (and the test split of a dataset without an official test set, and a sample of the training images), so this
    spread includes the data's sampling: larger, so more cautious, than the noise of two models at one seed."""
    number = list(SECTIONS.values()).index(section) + 1
    owner, baseline = f"section {number}'s", BASELINES[section]
    pairs = seed_pairs(runs, section)
    if not pairs:
        return Spread(None, f"this lab has no {baseline} run with the next seed: it was made with --no-spread-seed "
                            "or before each section measured its own spread; run the lab again without "
                            "--no-spread-seed to add it", owner)
    first, _ = next(iter(pairs.values()))
    n_test = (first.get("split_sizes") or {}).get("test")
    changes = [(100 * a["test"]["accuracy"], 100 * b["test"]["accuracy"]) for a, b in pairs.values()]
    points = seed_spread(changes, n_test)
    seed = first["hyperparameters"]["seed"]
    names = [BACKEND_TITLES.get(b, b) for b in pairs]
    where = f"on {names[0]}" if len(names) == 1 else f"the larger change of {' and '.join(names)}"
    floor = ", raised to one test image" if points > seed_spread(changes) else ""
    return Spread(points, f"{baseline}, seed {seed} vs {seed + 1}, {where}{floor}", owner)


def same_test_set(run_a: Path, run_b: Path) -> bool:
    """Whether two runs were tested on the same images, as far as their saved labels tell (a seed draws the test
    split of a dataset without an official test set)."""
    a, b = (np.load(run / PREDICTIONS_FILE)["labels"] for run in (run_a, run_b))
    return np.array_equal(a, b)


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
