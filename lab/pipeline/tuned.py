"""Section 1.4 of the lab: a keras-tuner search on each backend, its best configuration retrained as the
first CNN was (same data, epochs and seed), so the two compare."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import LabError
from lab.config.settings import make_settings
from lab.run.reuse import ensure_run
from lab.tuning.search import OtherSearch, SearchOptions, run_search
from lab.tuning.space import overrides_of, parse_space, trial_settings
from lab.tuning.trials import best_rows


@dataclass(frozen=True)
class Search:
    folder: Path  # keras-tuner's project folder, with trials.csv and summary.md
    rows: list[dict]  # one per trial (lab.tuning.trials.trial_row)
    tuner: str
    space: str  # the search space in words


def tuned_run(backend: str, first_cnn: dict, preset: dict, rerun: bool) -> tuple[Search, Path, str]:
    """(the search, the retrained best run, what ensure_run did). preset: a PRESETS entry with its "name". A
    finished search is reused, an interrupted one continues; --rerun starts it afresh. Each preset searches in
    a folder of its own (tune-<dataset>-<preset>), as runs of other settings go to versions of their own."""
    dataset = first_cnn["dataset"]
    base = make_settings({**first_cnn, "name": f"tune-{dataset}-{preset['name']}"})
    opts = SearchOptions(backend=backend, tuner="random", max_trials=preset["tuner_trials"],
                         max_epochs=preset["tuner_epochs"], patience=2,
                         max_trial_images=preset["tuner_images"],
                         space=parse_space(preset["tuner_space"]), overwrite=rerun, retrain=False)
    try:
        outcome = run_search(base, opts)
    except OtherSearch as error:  # e.g. an earlier lab in this --out ran on other data or another --seed
        raise LabError(f"{error.folder} holds section 1.4's search from an earlier lab with other settings "
                       f"({error.changes}); add --rerun to run the lab's experiments afresh, or choose another "
                       "--out.") from None
    best = best_rows(outcome.rows, 1)[0]
    tuned = trial_settings(base, overrides_of(best), epochs=first_cnn["epochs"], name=f"tuned_cnn-{dataset}")
    run_dir, what = ensure_run(backend, tuned, rerun)
    return Search(outcome.folder, outcome.rows, opts.tuner, opts.space.describe()), run_dir, what
