"""augment_compare.py's pipeline: one model trained without and with augmentation on each backend, compared.

Runs go to OUT/<experiment>-noaug/<backend>/version_N and OUT/<experiment>-aug/<backend>/version_N; the
comparison (accuracy, time, train-validation gap, overlaid validation curves) to OUT/comparisons/<experiment>-augment.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import LabError
from lab.config.data import load_data
from lab.config.settings import ExperimentSettings, load_yaml, make_settings
from lab.progress import progress
from lab.records.results import load_results
from lab.reports.comparison import compare_runs, format_gap, run_row
from lab.run.backend import parse_backends
from lab.run.reuse import run_each
from lab.specs.augmentation import AugmentSpec, check_settings
from lab.specs.models import model_spec

# The training settings this tool takes as flags (others through --config).
PASSED = ("dataset", "data_dir", "model", "epochs", "batch_size", "width", "depth", "dense_units", "dropout",
          "image_size", "resize", "optimizer", "lr", "seed", "flip", "crop_pad", "rotate", "color_jitter", "cutout",
          "save_augmented", "test_weights", "accelerator", "gpus", "devices", "precision")
TOOL_DEFAULTS = {"model": "cifar_cnn", "flip": True, "crop_pad": 4}
OUT = "runs/augment"
AUGMENTATION_OFF = {"flip": False, "crop_pad": 0, "rotate": 0.0, "color_jitter": 0.0, "cutout": 0,
                    "save_augmented": False}


def plan(args: argparse.Namespace) -> tuple[list[str], str, list[ExperimentSettings]]:
    """The backends, the experiment name, and the settings without and with augmentation (LabError if they
    cannot work). --out and --name are the command's own: a --config file does not set them."""
    given = {k: v for k, v in vars(args).items() if k in PASSED}
    values = {**TOOL_DEFAULTS, **(load_yaml(args.config) if getattr(args, "config", None) else {}), **given}
    values.update(out=getattr(args, "out", OUT), name=getattr(args, "name", None))
    base = make_settings(values)
    if not AugmentSpec.from_settings(base).active:
        raise LabError("no augmentation is selected, so there is nothing to compare; "
                       "give e.g. --flip true --crop-pad 4.")
    without = make_settings({**base.to_dict(), **AUGMENTATION_OFF, "name": f"{base.experiment}-noaug"})
    with_aug = make_settings({**base.to_dict(), "name": f"{base.experiment}-aug"})
    return parse_backends(args.backends), base.experiment, [without, with_aug]


def check_shapes(settings: ExperimentSettings) -> None:
    """Refuse impossible model or augmentation shapes before the first run starts."""
    splits = load_data(settings, train_images=False)
    model_spec(settings, splits.input_shape, splits.num_classes)
    check_settings(settings, splits.input_shape)


def run_pair(args: argparse.Namespace) -> tuple[list[Path], dict]:
    """Train the runs the flags ask for, write the comparison: (run folders, compare_runs' answer)."""
    backends, experiment, settings_pair = plan(args)
    check_shapes(settings_pair[1])
    with progress(getattr(args, "progress", None)):
        run_dirs = run_each(backends, settings_pair, args.rerun)
    out = Path(settings_pair[0].out) / "comparisons" / f"{experiment}-augment"
    return run_dirs, compare_runs(run_dirs, out)


def summary(run_dirs: list[Path]) -> str:
    rows = [run_row(run_dir, load_results(run_dir)) for run_dir in run_dirs]
    names = [f"{row['experiment']} / {row['backend']}" for row in rows]
    width = max(map(len, names + ["run"]))
    lines = [f"{'run':{width}s} {'test acc':>9s} {'time':>9s} {'train-val gap':>14s}"]
    for name, row in zip(names, rows):
        lines.append(f"{name:{width}s} {row['accuracy']:8.2f}% {row['time_s']:8.1f}s "
                     f"{format_gap(row['gap'], ' pp'):>14s}")
    return "\n".join(lines)
