"""A hyperparameter search for either backend, start to finish.

The search (keras-tuner, resumable: a finished trial is never run again), then trials.csv and the
best-trials summary, then the best configuration retrained as a normal run next to `first_cnn`
trained as long, and the two compared. Everything goes under OUT/<name>/<backend>/:
tuning/ (the search and one TensorBoard run per trial) and comparison/; the two runs are the
experiments <name>-best and <name>-first_cnn.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import LabError
from core.io import write_json_atomic, write_text_atomic
from datamodules import sample_train
from lab.config.data import load_data
from lab.config.devices import require_one_device
from lab.config.settings import ExperimentSettings, make_settings
from lab.records.results import load_results
from lab.reports.comparison import compare_runs
from lab.run.backend import BACKENDS, get_backend
from lab.run.reuse import ensure_run
from lab.tuning import cluster
from lab.tuning.space import Constraint, SearchSpace, overrides_of, trial_settings
from lab.tuning.trials import CSV_FILE, PROJECT, SUMMARY_FILE, best_rows, print_best, summary_markdown

if TYPE_CHECKING:
    from lab.tuning.engine import LabTuner

TUNERS = ("random", "hyperband", "bayesian")
SEARCH_FILE = "search.json"
BASELINE = "first_cnn"


@dataclass(frozen=True)
class SearchOptions:
    backend: str = "keras"
    tuner: str = "random"
    max_trials: int = 10
    max_epochs: int = 10
    patience: int = 3
    epochs: int | None = None  # of the retrained best and of first_cnn; None: max_epochs
    max_params: int | None = 2_000_000
    trial_fraction: float = 1.0  # of the training images each trial trains on
    max_trial_images: int | None = None  # and at most this many of them
    time_budget: float | None = None  # minutes of search in this session; no trial starts that would overrun
    space: SearchSpace = field(default_factory=SearchSpace)
    overwrite: bool = False
    retrain: bool = True
    top: int = 5
    chief_wait: float = 180.0  # seconds a worker waits for the chief to answer
    worker_timeout: float = 600.0  # seconds the chief waits without a call from any worker
    worker_silence: float = 60.0  # seconds after which a silent worker's trial goes back to the queue

    @property
    def final_epochs(self) -> int:
        return self.epochs or self.max_epochs


@dataclass
class SearchOutcome:
    folder: Path
    trials_run: int
    rows: list[dict]
    search_s: float = 0.0  # wall time of the search in this session
    retrain_s: float = 0.0  # wall time of retraining the best and first_cnn
    best_run: Path | None = None
    baseline_run: Path | None = None
    comparison: Path | None = None


def search_name(base: ExperimentSettings) -> str:
    return base.name or f"tune-{base.dataset}"


def search_folder(base: ExperimentSettings, backend: str) -> Path:
    return Path(base.out) / search_name(base) / backend / PROJECT


def run_search(base: ExperimentSettings, opts: SearchOptions) -> SearchOutcome:
    """Search (or continue the search in the same folder), summarise, retrain the best, compare."""
    check_options(opts)
    require_one_device(base)
    part = cluster.role()
    if part.kind == "worker" and opts.overwrite:
        raise LabError("--overwrite is for the chief only: on a worker keras-tuner would delete the whole search "
                       "folder under the running search; drop it on the workers.")
    base = make_settings({**base.to_dict(), "model": "cnn", "epochs": opts.max_epochs})
    folder = search_folder(base, opts.backend)
    definition = search_definition(base, opts)
    if not opts.overwrite:
        _check_same_search(folder, definition)
    splits = load_data(base, train_images=False)
    constraint = Constraint(splits.input_shape, splits.num_classes, opts.max_params)
    constraint.check_space(opts.space)
    trial_images = max(1, round(len(splits.train) * opts.trial_fraction))
    trial_images = min(trial_images, opts.max_trial_images or trial_images)
    if part.kind == "chief":
        cluster.check_port_free(part)
    elif part.kind == "worker":
        import lab.tuning.engine  # noqa: F401  keras-tuner and TensorFlow loaded: ready the moment the chief answers

        print(f"worker {part.tuner_id}: {cluster.READY} at {part.address}", flush=True)
        cluster.wait_for_chief(part, opts.chief_wait)
    tuner = _make_tuner(base, opts, sample_train(splits, trial_images, base.seed), constraint, folder, part)
    started = time.monotonic()
    if part.kind == "worker":
        tuner.search_until_done()
        print(f"\nworker {part.tuner_id}: {tuner.trials_run} trial(s) trained; the chief writes the results.")
        return SearchOutcome(folder, tuner.trials_run, [], search_s=time.monotonic() - started)
    write_json_atomic(folder / SEARCH_FILE, definition)
    if opts.time_budget:
        tuner.set_deadline(started + 60 * opts.time_budget)
    tuner.search_until_done(opts.worker_timeout)
    rows = tuner.rows()
    tuner.write_csv()
    outcome = SearchOutcome(folder, tuner.trials_run, rows, search_s=time.monotonic() - started)
    _announce(outcome, tuner.stopped_for_time, opts)
    if not best_rows(rows, 1):
        raise LabError(f"no trial of the search finished; see why in {folder / CSV_FILE} (column message).")
    print_best(rows, opts.top, f"{opts.backend}: the best trials by validation accuracy")
    _write_summary(folder, base, opts, rows, [])
    if opts.retrain:
        started = time.monotonic()
        _retrain(base, opts, outcome)
        outcome.retrain_s = time.monotonic() - started
    print(f"summary: {folder / SUMMARY_FILE}\nTensorBoard: tensorboard --logdir {folder.parents[1]}")
    return outcome


def check_options(opts: SearchOptions) -> None:
    if opts.tuner not in TUNERS:
        raise LabError(f"tuner must be one of {', '.join(TUNERS)}, got {opts.tuner!r}.")
    if opts.backend not in BACKENDS:
        raise LabError(f"backend must be one of {', '.join(BACKENDS)}, got {opts.backend!r}.")
    for name in ("max_trials", "max_epochs", "patience", "epochs", "max_params", "top", "max_trial_images"):
        value = getattr(opts, name)
        if value is not None and value < 1:
            raise LabError(f"{name.replace('_', '-')} must be at least 1, got {value}.")
    for name in ("chief_wait", "worker_timeout", "worker_silence"):
        if getattr(opts, name) <= 0:
            raise LabError(f"{name.replace('_', '-')} must be a positive number of seconds, "
                           f"got {getattr(opts, name):g}.")
    if opts.time_budget is not None and opts.time_budget <= 0:
        raise LabError(f"time-budget must be a positive number of minutes, got {opts.time_budget:g}.")
    if not 0 < opts.trial_fraction <= 1:
        raise LabError(f"trial-fraction must be in (0, 1], got {opts.trial_fraction}.")


def search_definition(base: ExperimentSettings, opts: SearchOptions) -> dict:
    """What makes a search the same search (--max-trials may grow; retraining may change)."""
    keep = ("dataset", "data_dir", "image_size", "classes", "seed", "val_fraction")
    resize = {"resize": base.resize} if base.image_size else {}  # absent from the searches saved before it
    definition = {"backend": opts.backend, "tuner": opts.tuner, **{k: getattr(base, k) for k in keep}, **resize,
                  "max_epochs": opts.max_epochs, "patience": opts.patience, "max_params": opts.max_params,
                  "trial_fraction": opts.trial_fraction, "space": opts.space.to_dict()}
    if opts.max_trial_images:  # absent from the searches saved before it
        definition["max_trial_images"] = opts.max_trial_images
    return json.loads(json.dumps(definition))


class OtherSearch(LabError):
    """The search folder holds a search with other settings; `changes` says which, for callers that phrase
    their own advice (run_lab's is --rerun, not --overwrite)."""

    def __init__(self, folder: Path, changes: str):
        super().__init__(f"{folder} holds a search with other settings ({changes}); run it with its own flags to "
                         "continue it, add --overwrite to start afresh, or choose another --name.")
        self.folder, self.changes = folder, changes


def _check_same_search(folder: Path, definition: dict) -> None:
    path = folder / SEARCH_FILE
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    changed = [f"{k} {json.dumps(saved.get(k))} there, {json.dumps(v)} now" for k, v in definition.items()
               if saved.get(k) != v]
    if changed:
        raise OtherSearch(folder, "; ".join(changed))


def _make_tuner(base: ExperimentSettings, opts: SearchOptions, splits, constraint: Constraint, folder: Path,
                part: cluster.Role) -> LabTuner:
    from lab.tuning.engine import LabTuner, make_oracle  # keras-tuner loads TensorFlow: only once a search starts

    backend = get_backend(opts.backend)
    plan = backend.plan_devices(base)
    oracle = make_oracle(opts.tuner, constraint, opts.max_trials, opts.max_epochs, base.seed)
    return LabTuner(oracle, backend, opts.space, base, splits, plan, opts.patience, folder.parent, opts.overwrite,
                    part, opts.chief_wait, opts.worker_silence)


def _announce(outcome: SearchOutcome, stopped_for_time: bool, opts: SearchOptions) -> None:
    folder, rows = outcome.folder, outcome.rows
    if outcome.trials_run == 0 and rows and not stopped_for_time:
        print(f"\nThe search in {folder} had already finished ({len(rows)} trials); its results follow. "
              "Raise --max-trials to run more trials, or add --overwrite to start afresh.")
        return
    state = "stopped" if stopped_for_time else "finished"
    print(f"\nSearch {state}: {outcome.trials_run} trial(s) run now in {outcome.search_s / 60:.1f} min, "
          f"{len(rows)} in all; every trial: {folder / CSV_FILE}")
    if stopped_for_time:
        print(f"The time budget of {opts.time_budget:g} min is spent; run the same command again to continue.")
    elif len(rows) < opts.max_trials and opts.tuner != "hyperband":
        print(f"keras-tuner found no untried configuration after {len(rows)} trials: the space is exhausted.")


def _retrain(base: ExperimentSettings, opts: SearchOptions, outcome: SearchOutcome) -> None:
    best = best_rows(outcome.rows, 1)[0]
    name, epochs = search_name(base), opts.final_epochs
    tuned = trial_settings(base, overrides_of(best), epochs=epochs, name=f"{name}-best")
    baseline = make_settings({**base.to_dict(), "model": BASELINE, "epochs": epochs, "name": f"{name}-{BASELINE}"})
    print(f"\nRetraining the best configuration (trial {best['trial']}) and {BASELINE}, {epochs} epochs each.")
    outcome.best_run = _trained(opts.backend, tuned)
    outcome.baseline_run = _trained(opts.backend, baseline)
    written = compare_runs([outcome.best_run, outcome.baseline_run], outcome.folder.parent / "comparison")
    outcome.comparison = written["markdown"]
    lines = _retrain_lines(best, outcome, opts)
    print("\n" + "\n".join(lines))
    _write_summary(outcome.folder, base, opts, outcome.rows, lines)


def _trained(backend: str, settings: ExperimentSettings) -> Path:
    run_dir, what = ensure_run(backend, settings)
    if what == "reused":
        print(f"{settings.experiment}: already trained in {run_dir}")
    return run_dir


def _retrain_lines(best: dict, outcome: SearchOutcome, opts: SearchOptions) -> list[str]:
    tuned = load_results(outcome.best_run)["test"]["accuracy"]
    baseline = load_results(outcome.baseline_run)["test"]["accuracy"]
    table = outcome.comparison.read_text().split("\n", 2)[-1].strip()
    return ["## Retrained", "",
            f"The best trial ({best['trial']}, validation accuracy {best['val_acc']:.2%}) retrained for "
            f"{opts.final_epochs} epochs reaches a test accuracy of {tuned:.2%}; {BASELINE} trained as long reaches "
            f"{baseline:.2%}: {100 * (tuned - baseline):+.2f} points.", "", table, "",
            f"Runs: {outcome.best_run} and {outcome.baseline_run}; comparison: {outcome.comparison}."]


def _trial_share(opts: SearchOptions) -> str:
    share = f"{opts.trial_fraction:.0%} of the training images"
    return f"{share} (at most {opts.max_trial_images:,})" if opts.max_trial_images else share


def _write_summary(folder: Path, base: ExperimentSettings, opts: SearchOptions, rows: list[dict],
                   footer: list[str]) -> Path:
    cap = f"{opts.max_params:,}" if opts.max_params else "any number of"
    header = [f"# Search {search_name(base)} ({opts.backend})", "",
              f"{opts.tuner} search with keras-tuner on {base.dataset} (seed {base.seed}): at most "
              f"{opts.max_trials} trials of up to {opts.max_epochs} epochs on {_trial_share(opts)}, early stopping "
              f"after {opts.patience} epochs without progress in validation "
              f"accuracy, models up to {cap} parameters.", "",
              f"Search space (model cnn): {opts.space.describe()}."]
    best = best_rows(rows, 1)
    if best:
        flags = " ".join(f"--{k.replace('_', '-')} {str(v).lower()}" for k, v in overrides_of(best[0]).items())
        header += ["", f"The best configuration as a normal run: `python train_{opts.backend}.py --dataset "
                       f"{base.dataset} {flags} --epochs {opts.final_epochs}`"]
    return write_text_atomic(folder / SUMMARY_FILE, summary_markdown(rows, opts.top, header, footer))
