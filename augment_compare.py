#!/usr/bin/env python
"""Train one model without and with augmentation on each backend, then compare the runs.

    python augment_compare.py --dataset folder --data-dir ../shared/data/cifar10-jpg.tar.gz --epochs 15

Runs go to OUT/<experiment>-noaug/<backend>/version_N and OUT/<experiment>-aug/<backend>/version_N; the
comparison (accuracy, time, train-validation gap, overlaid validation curves) to OUT/comparisons/<experiment>-augment.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli import run_command
from core.errors import LabError
from lab.config.data import load_data
from lab.config.settings import (
    CHOICES,
    HELP,
    ExperimentSettings,
    LabArgumentParser,
    add_progress_flag,
    load_yaml,
    make_settings,
    parse_bool,
)
from lab.progress import progress
from lab.records.results import load_results
from lab.reports.comparison import compare_runs, format_gap, run_row
from lab.run.backend import parse_backends
from lab.run.reuse import add_comparison_flags, run_each
from lab.specs.augmentation import AugmentSpec, check_settings
from lab.specs.models import model_spec

# The training settings this tool takes as flags (others through --config), with their types.
PASSED = {"dataset": str, "data_dir": str, "model": str, "epochs": int, "batch_size": int, "width": int,
          "depth": int, "dense_units": int, "dropout": float, "image_size": int, "resize": str, "optimizer": str,
          "lr": float, "seed": int, "flip": parse_bool, "crop_pad": int, "rotate": float, "color_jitter": float,
          "cutout": int, "save_augmented": parse_bool, "test_weights": str, "accelerator": str, "gpus": int,
          "devices": str,
          "precision": str}
TOOL_DEFAULTS = {"model": "cifar_cnn", "flip": True, "crop_pad": 4}
AUGMENTATION_OFF = {"flip": False, "crop_pad": 0, "rotate": 0.0, "color_jitter": 0.0, "cutout": 0,
                    "save_augmented": False}


def build_parser() -> LabArgumentParser:
    parser = LabArgumentParser(prog="augment_compare.py", description=__doc__.splitlines()[0],
                               argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", help="YAML file of further training settings, e.g. 'width: 16' "
                                         "(flags given on the command line win)")
    defaults = ExperimentSettings()
    for name, kind in PASSED.items():
        default = TOOL_DEFAULTS.get(name, getattr(defaults, name))
        text = HELP[name] + ("" if default is None else f" (default: {default})")
        parser.add_argument("--" + name.replace("_", "-"), type=kind, choices=CHOICES.get(name), help=text)
    add_progress_flag(parser)
    add_comparison_flags(parser)
    parser.add_argument("--out", default="runs/augment", help="root folder of the runs and the comparison "
                                                              "(default: runs/augment)")
    parser.add_argument("--name", help="experiment name (default: <model>-<dataset>); the runs add -noaug and -aug")
    return parser


def plan(args) -> tuple[list[str], str, list]:
    """The backends, the experiment name, and the settings without and with augmentation (LabError if they
    cannot work)."""
    given = {k: v for k, v in vars(args).items() if k in PASSED}
    values = {**TOOL_DEFAULTS, **(load_yaml(args.config) if getattr(args, "config", None) else {}), **given}
    values.update(out=args.out, name=getattr(args, "name", None))
    base = make_settings(values)
    if not AugmentSpec.from_settings(base).active:
        raise LabError("no augmentation is selected, so there is nothing to compare; "
                       "give e.g. --flip true --crop-pad 4.")
    without = make_settings({**base.to_dict(), **AUGMENTATION_OFF, "name": f"{base.experiment}-noaug"})
    with_aug = make_settings({**base.to_dict(), "name": f"{base.experiment}-aug"})
    return parse_backends(args.backends), base.experiment, [without, with_aug]


def check_shapes(settings) -> None:
    """Refuse impossible model or augmentation shapes before the first run starts."""
    splits = load_data(settings, train_images=False)
    model_spec(settings, splits.input_shape, splits.num_classes)
    check_settings(settings, splits.input_shape)


def summary(run_dirs: list[Path]) -> str:
    rows = [run_row(run_dir, load_results(run_dir)) for run_dir in run_dirs]
    names = [f"{row['experiment']} / {row['backend']}" for row in rows]
    width = max(map(len, names + ["run"]))
    lines = [f"{'run':{width}s} {'test acc':>9s} {'time':>9s} {'train-val gap':>14s}"]
    for name, row in zip(names, rows):
        lines.append(f"{name:{width}s} {row['accuracy']:8.2f}% {row['time_s']:8.1f}s "
                     f"{format_gap(row['gap'], ' pp'):>14s}")
    return "\n".join(lines)


def compare(argv: list[str] | None = None) -> tuple[list[Path], dict]:
    """Parse the flags, train the runs, write the comparison: (run folders, compare_runs' answer)."""
    args = build_parser().parse_args(argv)
    backends, experiment, settings_pair = plan(args)
    check_shapes(settings_pair[1])
    with progress(getattr(args, "progress", None)):
        run_dirs = run_each(backends, settings_pair, args.rerun)
    return run_dirs, compare_runs(run_dirs, Path(args.out) / "comparisons" / f"{experiment}-augment")


def main(argv: list[str] | None = None) -> int:
    code, result = run_command(lambda: compare(argv), "finished runs and epochs are kept; run the same command "
                                                      "again to continue and compare.")
    if code:
        return code
    run_dirs, written = result
    print("\n" + summary(run_dirs))
    print(f"\ncomparison: {written['markdown']}\ncurves:     {written['curves']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
