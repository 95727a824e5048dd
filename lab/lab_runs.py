"""Run an experiment unless it already ran: the lab reuses finished work and continues interrupted runs."""
from __future__ import annotations

import json
from pathlib import Path

from lab.results import RESULTS_FILE
from lab.rundirs import SETTINGS_FILE, versions
from lab.runner import run_settings


def find_matching(settings, backend: str) -> Path | None:
    """The newest run folder of this experiment and backend whose saved settings equal these."""
    wanted = settings.to_dict()
    for _, run_dir in reversed(versions(Path(settings.out) / settings.experiment / backend)):
        try:
            if json.loads((run_dir / SETTINGS_FILE).read_text()) == wanted:
                return run_dir
        except (OSError, json.JSONDecodeError):
            continue
    return None


def ensure_run(backend: str, settings, rerun: bool = False) -> tuple[Path, str]:
    """(run folder, what happened: 'reused', 'resumed' or 'ran')."""
    existing = None if rerun else find_matching(settings, backend)
    if existing is not None and (existing / RESULTS_FILE).exists():
        return existing, "reused"
    if existing is not None:
        return run_settings(backend, settings, resume_dir=existing), "resumed"
    return run_settings(backend, settings), "ran"
