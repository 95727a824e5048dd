"""Run an experiment unless it already ran: the lab reuses finished work and continues interrupted runs."""
from __future__ import annotations

import json
from pathlib import Path

from lab.config.devices import require_one_device
from lab.config.settings import ExperimentSettings
from lab.records.results import RESULTS_FILE
from lab.records.rundirs import SETTINGS_FILE, versions
from lab.run.backend import in_training_order
from lab.run.runner import run_settings

# Where a run trained, not what it computes: one device or N give the same results within float tolerance, so a
# run made with --accelerator cpu (as labs before the lab's own --devices saved theirs) is the same experiment.
PLACEMENT = ("accelerator", "gpus", "devices")


def find_matching(settings: ExperimentSettings, backend: str) -> Path | None:
    """The newest run folder of this experiment and backend whose saved settings equal these (every setting
    counts but PLACEMENT); a setting added since a run was saved counts as its default there."""
    wanted, defaults = _identity(settings.to_dict()), ExperimentSettings().to_dict()
    for _, run_dir in reversed(versions(Path(settings.out) / settings.experiment / backend)):
        try:
            if _identity({**defaults, **json.loads((run_dir / SETTINGS_FILE).read_text())}) == wanted:
                return run_dir
        except (OSError, json.JSONDecodeError):
            continue
    return None


def _identity(values: dict) -> dict:
    return {k: v for k, v in values.items() if k not in PLACEMENT}


def ensure_run(backend: str, settings: ExperimentSettings, rerun: bool = False) -> tuple[Path, str]:
    """(run folder, what happened: 'reused', 'resumed' or 'ran')."""
    require_one_device(settings)
    existing = None if rerun else find_matching(settings, backend)
    if existing is not None and (existing / RESULTS_FILE).exists():
        return existing, "reused"
    if existing is not None:
        return run_settings(backend, settings, resume_dir=existing), "resumed"
    return run_settings(backend, settings), "ran"


def run_each(backends: list[str], settings_list: list[ExperimentSettings], rerun: bool = False) -> list[Path]:
    """Every settings on every backend, reusing finished runs (unless rerun), one backend at a time in
    TRAINING_ORDER; the folders settings by settings, each in the order of `backends`."""
    done = {}
    for backend in in_training_order(backends):
        for i, settings in enumerate(settings_list):
            done[backend, i], what = ensure_run(backend, settings, rerun)
            if what != "ran":
                print(f"{settings.experiment} / {backend}: {what} {done[backend, i]}")
    return [done[b, i] for i in range(len(settings_list)) for b in backends]
