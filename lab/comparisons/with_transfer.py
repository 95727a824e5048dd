"""transfer_compare.py's pipeline: a model pretrained-then-fine-tuned and the same model from scratch, on each
backend, compared.

The pretrained side trains as train_<backend>.py would with these flags (--weights may name an experiment
folder: each backend takes its latest finished run there). The from-scratch side is the same model with
--weights none, every layer trainable at --lr, for the same --epochs + --finetune-epochs. Runs go to
OUT/<experiment>-transfer/ and OUT/<experiment>-scratch/, the comparison to OUT/comparisons/<experiment>-transfer.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import LabError
from lab.config.settings import ExperimentSettings, make_settings, settings_from_args
from lab.progress import progress
from lab.records.results import load_results
from lab.reports.comparison import compare_runs
from lab.run.backend import parse_backends
from lab.run.reuse import run_each
from lab.specs.phases import TransferSpec
from lab.specs.weight_sources import resolve_weights


def plan(args: argparse.Namespace) -> tuple[list[str], str, list[ExperimentSettings]]:
    """The backends, the experiment name, and the settings of the pretrained and the from-scratch runs."""
    backends = parse_backends(args.backends)
    flags = {k: v for k, v in vars(args).items() if k not in ("backends", "rerun", "progress")}
    base = settings_from_args(argparse.Namespace(**flags))
    if not TransferSpec.from_settings(base).pretrained:
        raise LabError("give --weights (imagenet, a weights file or an earlier run) for the pretrained side; "
                       "the from-scratch side is trained with --weights none by this command.")
    for backend in backends:  # a missing checkpoint fails now, not after an hour of training
        resolve_weights(base.weights, backend, base.model)
    values = base.to_dict()
    pretrained = make_settings({**values, "name": f"{base.experiment}-transfer"})
    scratch = make_settings({**values, "weights": None, "epochs": base.epochs + base.finetune_epochs,
                             "finetune_epochs": 0, "name": f"{base.experiment}-scratch"})
    return backends, base.experiment, [pretrained, scratch]


def run_pair(args: argparse.Namespace) -> tuple[list[Path], dict]:
    """Train the runs the flags ask for, write the comparison: (run folders, compare_runs' answer)."""
    backends, experiment, runs = plan(args)
    with progress(getattr(args, "progress", None)):
        run_dirs = run_each(backends, runs, args.rerun)
    return run_dirs, compare_runs(run_dirs, Path(runs[0].out) / "comparisons" / f"{experiment}-transfer")


def summary(run_dirs: list[Path]) -> str:
    """Each run's test accuracy and training time, and its test accuracy at the end of each phase."""
    lines = []
    for run_dir in run_dirs:
        r = load_results(run_dir)
        phases = [f"{p['name']} {100 * p['test_acc']:.2f}%" for p in r["extra"].get("phases", [])
                  if p.get("test_acc") is not None]
        lines.append(f"{r['experiment']} / {r['backend']}: test accuracy {100 * r['test']['accuracy']:.2f}% in "
                     f"{r['timing']['total_s']:.1f}s" + (f" ({', '.join(phases)})" if phases else ""))
    return "\n".join(lines)
