#!/usr/bin/env python
"""Train a model pretrained-then-fine-tuned and the same model from scratch on each backend, then compare.

    python transfer_compare.py --model mobilenet --weights imagenet --image-size 96 --epochs 3 \\
        --finetune-epochs 3 --unfreeze 0.25 --dataset folder --data-dir ../shared/data/cifar10-jpg.tar.gz

    python transfer_compare.py --model cifar_cnn --width 16 --depth 2 --weights runs/cifar-first5 \\
        --classes 5,6,7,8,9 --epochs 2 --finetune-epochs 3 --dataset folder --data-dir ...

The pretrained side trains as train_<backend>.py would with these flags (--weights may name an experiment
folder: each backend takes its latest finished run there). The from-scratch side is the same model with
--weights none, every layer trainable at --lr, for the same --epochs + --finetune-epochs. Runs go to
OUT/<experiment>-transfer/ and OUT/<experiment>-scratch/, the comparison to OUT/comparisons/<experiment>-transfer.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from core.cli import run_command
from core.errors import LabError
from lab.config.settings import (
    ExperimentSettings,
    LabArgumentParser,
    add_progress_flag,
    add_setting_flags,
    make_settings,
    settings_from_args,
)
from lab.progress import progress
from lab.run.backend import parse_backends
from lab.run.reuse import add_comparison_flags, run_each
from lab.specs.phases import is_pretrained
from lab.specs.weight_sources import resolve_weights


def build_parser() -> LabArgumentParser:
    parser = LabArgumentParser(prog="transfer_compare.py", description=__doc__.splitlines()[0],
                               argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", help="YAML file of settings (flags given on the command line win)")
    add_setting_flags(parser, [f.name for f in fields(ExperimentSettings)])
    add_progress_flag(parser)
    add_comparison_flags(parser)
    return parser


def plan(args: argparse.Namespace) -> tuple[list[str], str, list[ExperimentSettings]]:
    """The backends, the experiment name, and the settings of the pretrained and the from-scratch runs."""
    backends = parse_backends(args.backends)
    flags = {k: v for k, v in vars(args).items() if k not in ("backends", "rerun", "progress")}
    base = settings_from_args(argparse.Namespace(**flags))
    if not is_pretrained(base):
        raise LabError("give --weights (imagenet, a weights file or an earlier run) for the pretrained side; "
                       "the from-scratch side is trained with --weights none by this command.")
    for backend in backends:  # a missing checkpoint fails now, not after an hour of training
        resolve_weights(base.weights, backend, base.model)
    values = base.to_dict()
    pretrained = make_settings({**values, "name": f"{base.experiment}-transfer"})
    scratch = make_settings({**values, "weights": None, "epochs": base.epochs + base.finetune_epochs,
                             "finetune_epochs": 0, "name": f"{base.experiment}-scratch"})
    return backends, base.experiment, [pretrained, scratch]


def summary(run_dirs: list[Path]) -> str:
    """Each run's test accuracy and training time, and its test accuracy at the end of each phase."""
    from lab.records.results import load_results

    lines = []
    for run_dir in run_dirs:
        r = load_results(run_dir)
        phases = [f"{p['name']} {100 * p['test_acc']:.2f}%" for p in r["extra"].get("phases", [])
                  if p.get("test_acc") is not None]
        lines.append(f"{r['experiment']} / {r['backend']}: test accuracy {100 * r['test']['accuracy']:.2f}% in "
                     f"{r['timing']['total_s']:.1f}s" + (f" ({', '.join(phases)})" if phases else ""))
    return "\n".join(lines)


def compare(argv: list[str] | None = None) -> tuple[list[Path], dict]:
    """Parse the flags, train the runs, write the comparison: (run folders, compare_runs' answer)."""
    from lab.reports.comparison import compare_runs

    args = build_parser().parse_args(argv)
    backends, experiment, runs = plan(args)
    with progress(getattr(args, "progress", None)):
        run_dirs = run_each(backends, runs, args.rerun)
    return run_dirs, compare_runs(run_dirs, Path(runs[0].out) / "comparisons" / f"{experiment}-transfer")


def main(argv: list[str] | None = None) -> int:
    code, result = run_command(lambda: compare(argv), "finished runs and epochs are kept; run the same command "
                                                      "again to continue and compare.")
    if result:
        run_dirs, written = result
        print("\n" + summary(run_dirs))
        print(f"\ncomparison: {written['markdown']}\ncurves:     {written['curves']}")
    return code


if __name__ == "__main__":
    sys.exit(main())
