"""Section 1.4 of the lab: a keras-tuner search on each backend (one job), then its best configuration retrained
as the first CNN was (same data, epochs and seed; a second job), so the two compare."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

from core.errors import LabError
from lab.config.settings import ExperimentSettings, make_settings
from lab.tuning.search import SEARCH_FILE, OtherSearch, SearchOptions, run_search, search_definition, search_folder
from lab.tuning.space import overrides_of, parse_space, trial_settings
from lab.tuning.trials import CSV_FILE, INT_METRICS, best_rows, untaken_trials

TEXT_COLUMNS = ("trial", "backend", "worker", "status", "padding", "optimizer", "message")
ENDED = ("COMPLETED", "FAILED", "INVALID", "STOPPED")  # a trial in any other state may still train


@dataclass(frozen=True)
class Search:
    folder: Path  # keras-tuner's project folder, with trials.csv and summary.md
    rows: list[dict]  # one per trial (lab.tuning.trials.trial_row)
    tuner: str
    space: str  # the search space in words


def search_setup(backend: str, first_cnn: dict, preset: dict, rerun: bool = False,
                 worker_silence: float | None = None) -> tuple[ExperimentSettings, SearchOptions]:
    """The search's base settings and options. preset: a PRESETS entry with its "name". Each preset searches in
    a folder of its own (tune-<dataset>-<preset>), as runs of other settings go to versions of their own.
    worker_silence: run_lab.py --worker-silence (None: the search's default), not part of what the search is."""
    base = make_settings({**first_cnn, "name": f"tune-{first_cnn['dataset']}-{preset['name']}"})
    opts = SearchOptions(backend=backend, tuner="random", max_trials=preset["tuner_trials"],
                         max_epochs=preset["tuner_epochs"], patience=2,
                         max_trial_images=preset["tuner_images"],
                         space=parse_space(preset["tuner_space"]), overwrite=rerun, retrain=False)
    return base, opts if worker_silence is None else replace(opts, worker_silence=worker_silence)


def search(backend: str, first_cnn: dict, preset: dict, rerun: bool, worker_silence: float | None = None) -> Search:
    """Run the search (as chief or worker when keras-tuner's variables say so). A finished search is reused, an
    interrupted one continues; --rerun starts it afresh."""
    base, opts = search_setup(backend, first_cnn, preset, rerun, worker_silence)
    try:
        outcome = run_search(base, opts)
    except OtherSearch as error:  # e.g. an earlier lab in this --out ran on other data or another --seed
        raise LabError(f"{error.folder} holds section 1.4's search from an earlier lab with other settings "
                       f"({error.changes}); add --rerun to run the lab's experiments afresh, or choose another "
                       "--out.") from None
    return Search(outcome.folder, outcome.rows, opts.tuner, opts.space.describe())


def finished_search(backend: str, first_cnn: dict, preset: dict) -> Search | None:
    """The lab's search when it has ended (every trial of its budget ended, on these settings), read from its
    trials.csv without keras-tuner; else None."""
    base, opts = search_setup(backend, first_cnn, preset)
    folder = _folder(backend, base, opts)
    try:
        saved = json.loads((folder / SEARCH_FILE).read_text())
        with open(folder / CSV_FILE, newline="") as f:
            rows = [typed_row(row) for row in csv.DictReader(f)]
    except (OSError, json.JSONDecodeError):
        return None
    wanted = search_definition(make_settings({**base.to_dict(), "model": "cnn", "epochs": opts.max_epochs}), opts)
    if saved != wanted or sum(row["status"] in ENDED for row in rows) < opts.max_trials or not best_rows(rows, 1):
        return None
    return Search(folder, rows, opts.tuner, opts.space.describe())


def open_trials(backend: str, first_cnn: dict, preset: dict, workers: list[str]) -> int:
    """How many more workers the lab's running search could give a trial now: the trials no worker holds, less
    one for each of its live `workers` (their IDs) that holds none, as it takes one next."""
    base, opts = search_setup(backend, first_cnn, preset)
    untaken, holders = untaken_trials(_folder(backend, base, opts), opts.max_trials)
    return untaken - sum(w not in holders for w in workers)


def _folder(backend: str, base: ExperimentSettings, opts: SearchOptions) -> Path:
    return search_folder(make_settings({**base.to_dict(), "model": "cnn", "epochs": opts.max_epochs}), backend)


def tuned_settings(first_cnn: dict, preset: dict, found: Search) -> ExperimentSettings:
    """The search's best configuration, trained as long as the first CNN."""
    base, _ = search_setup("", first_cnn, preset)
    best = best_rows(found.rows, 1)[0]
    return trial_settings(base, overrides_of(best), epochs=first_cnn["epochs"],
                          name=f"tuned_cnn-{first_cnn['dataset']}")


def typed_row(row: dict) -> dict:
    """A trials.csv row with the types trial_row gave it: numbers, booleans, None for an empty cell."""
    return {key: value if key in TEXT_COLUMNS else _value(key, value) for key, value in row.items()}


def _value(key: str, text: str):
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    number = float(text)
    return int(number) if key in INT_METRICS or (number.is_integer() and "." not in text and "e" not in text) \
        else number
