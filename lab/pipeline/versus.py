"""The report's side-by-side part: every experiment, Keras against PyTorch Lightning."""
from __future__ import annotations

from pathlib import Path

from lab.pipeline.plan import TITLES
from lab.pipeline.writeup import curves_figure
from lab.records.results import load_results
from lab.reports.commentary import Spread, versus_sentence
from lab.reports.comparison import run_row
from lab.reports.report import markdown_table

COLUMNS = ("Experiment", "Keras accuracy", "Lightning accuracy", "Keras time", "Lightning time",
           "Time ratio (Keras / Lightning)", "Params (Keras / Lightning)")


def versus_part(runs: dict, sections: list[str], out: Path, spread: Spread | None = None) -> list[str]:
    lines = ["# Keras against PyTorch Lightning", "",
             "Every experiment above on both backends: same data split, architecture, hyperparameters and seed.",
             ""]
    for section in sections:
        keys = list(runs["keras"][section])
        pairs = {key: _rows(runs["keras"][section][key], runs["lightning"][section][key]) for key in keys}
        lines += [f"## {TITLES[section]}", "", markdown_table(COLUMNS, [_row(key, *pairs[key]) for key in keys]), ""]
        for key in keys:
            keras, lightning = pairs[key]
            figure = curves_figure([runs["keras"][section][key], runs["lightning"][section][key]], out,
                                   f"versus-{key}")
            lines += [f"{key}: {versus_sentence('Keras', keras, 'PyTorch Lightning', lightning, spread)}", "",
                      figure, ""]
    return lines


def _rows(keras_dir: Path, lightning_dir: Path) -> tuple[dict, dict]:
    return tuple(run_row(d, load_results(d)) for d in (keras_dir, lightning_dir))


def _row(key: str, k: dict, t: dict) -> list:
    ratio = k["time_s"] / t["time_s"] if t["time_s"] else float("nan")
    return [key, f"{k['accuracy']:.2f}%", f"{t['accuracy']:.2f}%", f"{k['time_s']:.2f}s", f"{t['time_s']:.2f}s",
            f"{ratio:.2f}x", f"{k['params']:,} / {t['params']:,}"]
