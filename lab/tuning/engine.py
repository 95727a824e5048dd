"""The search engine both backends share: keras-tuner's oracles and a Tuner whose trials are lab runs.

A trial's hyperparameters become ExperimentSettings (lab.tuning.space), which the backend's own
`train()` trains in OUT/<name>/<backend>/tuning/trial_<id>: the same checkpoints, record.json and
TensorBoard tags as a normal run, plus the trial's HParams. A backend subclass only says how to train.
"""
from __future__ import annotations

import json
import shutil
import time
from functools import partial
from pathlib import Path

from lab.errors import LabError
from lab.frameworks import kt
from lab.io import write_text_atomic
from lab.records.recording import RECORD_FILE
from lab.records.rundirs import CHECKPOINTS_DIR, SETTINGS_FILE, load_settings, save_settings
from lab.run.backend import Backend
from lab.tuning.space import Constraint, SearchSpace, define, overrides_of, trial_settings
from lab.tuning.trials import CSV_FILE, METRICS, OBJECTIVE, PROJECT, trial_metrics, trial_row, write_csv

KT_TRIAL_FILE = "trial.json"


class _Feasible:
    """Oracle mixin: configurations that cannot be built for the input are never proposed.

    Random sampling (random search, Hyperband's new trials, Bayesian's first points) treats them as
    already tried and draws again; a Bayesian proposal that cannot be built is replaced by a random one.
    """

    constraint: Constraint

    def _duplicate(self, values):
        return super()._duplicate(values) or not self.constraint.fits(values)

    def populate_space(self, trial_id):
        response = super().populate_space(trial_id)
        values = response.get("values")
        if values and not self.constraint.fits(values):
            values = self._random_values()
            response = {"status": "RUNNING" if values else "STOPPED", "values": values}
        return response


class _AtomicSaves:
    """Oracle mixin: keras-tuner writes oracle.json and each trial.json in place, so a search killed
    mid-write leaves a truncated file that the resumed search cannot read. Here they are written atomically."""

    def save(self):
        write_text_atomic(self._get_oracle_fname(), json.dumps(self.get_state()))

    def _save_trial(self, trial):
        write_text_atomic(Path(self._get_trial_dir(trial.trial_id)) / KT_TRIAL_FILE, json.dumps(trial.get_state()))


class RandomOracle(_AtomicSaves, _Feasible, kt.oracles.RandomSearchOracle):
    pass


class BayesianOracle(_AtomicSaves, _Feasible, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(_AtomicSaves, _Feasible, kt.oracles.HyperbandOracle):
    pass


def make_oracle(kind: str, constraint: Constraint, max_trials: int, max_epochs: int, seed: int,
                factor: int = 3) -> kt.Oracle:
    objective = kt.Objective(OBJECTIVE, direction="max")
    common = dict(objective=objective, seed=seed + 1)  # keras-tuner takes seed 0 for "no seed"
    if kind == "hyperband":
        oracle = HyperbandOracle(max_epochs=max_epochs, factor=factor, hyperband_iterations=1, **common)
        oracle.max_trials = max_trials  # a cap on the trials of its brackets
    elif kind == "bayesian":
        # keras-tuner's default, 3 random points per hyperparameter, would leave nothing to model in most searches
        oracle = BayesianOracle(max_trials=max_trials, num_initial_points=max(2, max_trials // 3), **common)
    else:
        oracle = RandomOracle(max_trials=max_trials, **common)
    oracle.constraint = constraint
    oracle._max_collisions = 500  # draws refused as unbuildable count as collisions too
    return oracle


class LabTuner(kt.Tuner):
    """Runs each trial as a lab run of the backend, with early stopping after `patience` epochs."""

    def __init__(self, oracle: kt.Oracle, backend: Backend, space: SearchSpace, base, splits, plan, patience: int,
                 directory: Path, overwrite: bool):
        self.backend, self.space, self.base, self.splits, self.plan = backend, space, base, splits, plan
        self.patience = patience
        self.trials_run = 0
        self.deadline: float | None = None  # time.monotonic() after which no trial should still run
        self.stopped_for_time = False
        self._durations: list[float] = []
        super().__init__(oracle, hypermodel=partial(define, space=space), directory=str(directory),
                         project_name=PROJECT, overwrite=overwrite)

    def run_trial(self, trial, *args, **kwargs) -> dict:
        values = trial.hyperparameters.values
        problem = self.oracle.constraint.problem(values)
        if problem:  # the oracle does not propose these; a guard for edited state files
            raise kt.errors.FailedTrialError(f"this configuration cannot be built: {problem}")
        settings = trial_settings(self.base, overrides_of(values), epochs=values.get("tuner/epochs", self.base.epochs))
        trial_dir = Path(self.get_trial_dir(trial.trial_id))
        parent = values.get("tuner/trial_id")
        resume = _prepare(trial_dir, settings.to_dict(), Path(self.get_trial_dir(parent)) if parent else None)
        self.trials_run += 1
        started = time.monotonic()
        trained = self.backend.train(settings, self.splits, trial_dir, self.plan, resume, patience=self.patience)
        self._durations.append(time.monotonic() - started)
        metrics = trial_metrics(_history(trial_dir), values.get("tuner/initial_epoch", 0), trained.params.total)
        self.backend.log_extras(trial_dir, 0, {}, overrides_of(values),
                                {f"hp/{name}": metrics[name] for name in METRICS})
        return metrics

    def pre_create_trial(self):
        """Within a time budget, start no trial that would, at this session's mean trial time, end after it."""
        if self.deadline is None or self.stopped_for_time:
            return
        expected = sum(self._durations) / len(self._durations) if self._durations else 0.0
        if time.monotonic() + expected > self.deadline:
            self.stopped_for_time = True
            self.oracle.max_trials = len(self.oracle.trials)  # keras-tuner's own stop; not saved in its state

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        self.write_csv()

    def save(self):
        """As keras-tuner's, but atomic (see _AtomicSaves)."""
        if not self._is_worker():
            self.oracle.save()
        write_text_atomic(self._get_tuner_fname(), json.dumps(self.get_state()))

    def rows(self) -> list[dict]:
        return [trial_row(self.oracle.trials[trial_id], self.backend.name) for trial_id in self.oracle.start_order]

    def write_csv(self) -> Path:
        return write_csv(self.rows(), Path(self.project_dir))

    def search_until_done(self) -> None:
        """The search, with keras-tuner's abort after consecutive failures as a LabError."""
        try:
            self.search()
        except RuntimeError as e:
            if "consecutive failures" not in str(e):
                raise
            self.write_csv()
            last = str(e).strip().splitlines()[-1]
            raise LabError(f"the search stopped after {self.oracle.max_consecutive_failed_trials} failed trials "
                           f"in a row, the last with: {last}; see {Path(self.project_dir) / CSV_FILE}.") from None


def _prepare(trial_dir: Path, settings: dict, parent_dir: Path | None) -> bool:
    """Whether the trial continues from checkpoints: its own, when an interrupted trial runs again, or a
    copy of its parent's, when Hyperband trains a configuration further (from tuner/initial_epoch)."""
    own = trial_dir / CHECKPOINTS_DIR
    if own.is_dir() and (trial_dir / SETTINGS_FILE).exists() and load_settings(trial_dir) == settings:
        return True
    for stale in trial_dir.iterdir():  # a start afresh: only keras-tuner's own trial file stays
        if stale.name != KT_TRIAL_FILE:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    resume = parent_dir is not None and (parent_dir / CHECKPOINTS_DIR).is_dir()
    if resume:
        shutil.copytree(parent_dir / CHECKPOINTS_DIR, own)
        shutil.copy2(parent_dir / RECORD_FILE, trial_dir / RECORD_FILE)
    save_settings(trial_dir, settings)
    return resume


def _history(trial_dir: Path) -> list[dict]:
    return json.loads((trial_dir / RECORD_FILE).read_text())["history"]
