"""The search engine both backends share: keras-tuner's oracles and a Tuner whose trials are lab runs.

A trial's hyperparameters become ExperimentSettings (lab.tuning.space), which the backend's own
`train()` trains in OUT/<name>/<backend>/tuning/trial_<id>: the same checkpoints, record.json and
TensorBoard tags as a normal run, plus the trial's HParams.

Distributed (lab.tuning.cluster), keras-tuner's own engine runs the search: the chief serves the oracle over
gRPC with keras-tuner's OracleServicer, and each worker's Tuner talks to it through keras-tuner's
OracleClient. Everything that decides (the time budget, the failures, which worker ran what, the trials of
workers that fell silent: lab.tuning.liveness) lives in the oracle, so it works the same in one process and on the
chief; workers only train.
"""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from core.errors import LabError
from core.frameworks import kt
from core.io import write_text_atomic
from lab.records.recording import RECORD_FILE
from lab.records.rundirs import CHECKPOINTS_DIR, SETTINGS_FILE, load_settings, save_settings
from lab.run.backend import Backend
from lab.tuning.cluster import SINGLE_ID, Role
from lab.tuning.liveness import HEARTBEAT_S, Heartbeat, Requeueable, Requeueing, beat_interval, serve_beats
from lab.tuning.space import Constraint, SearchSpace, define, overrides_of, trial_settings
from lab.tuning.trials import CSV_FILE, METRICS, OBJECTIVE, PROJECT, trial_metrics, trial_row, write_csv

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings

KT_TRIAL_FILE = "trial.json"
MAX_RESTARTS = 3  # a trial whose worker came back this many times without finishing it fails


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


class _Bookkeeping:
    """Oracle mixin: what the search decides, in the process that holds the oracle (the only one, or the chief).

    - The time budget: past `deadline` less the mean trial time, it answers STOPPED, keras-tuner's own stop,
      so a worker never stops on its own and leaves the chief waiting.
    - Failures: keras-tuner raises after too many failed trials in a row, inside EndTrial on a chief, which
      leaves it waiting forever (keras-team/keras-tuner#645); here the search stops and `failed_out` says why.
    - A worker that comes back (same ID) without finishing its trial gets it again, keras-tuner's rule; after
      MAX_RESTARTS such returns the trial fails instead of crashing its worker forever.
    - Which worker ran each trial, and when any process last called (`last_contact`).

    The overrides of the methods keras-tuner synchronizes are `@kt.synchronized` too, as keras-tuner asks of
    subclasses, so the chief may serve them from several gRPC threads. Its lock is per oracle and re-entrant
    within a thread: a synchronized method may call another (create_trial calls end_trial).
    """

    constraint: Constraint

    def init_bookkeeping(self) -> None:
        self.deadline: float | None = None  # time.monotonic() after which no trial should still run
        self.stopped_for_time = False
        self.failed_out: str | None = None
        self.ended_now = 0  # trials ended since this process started: the search's progress in this session
        self.on_trial_ended: Callable[[], None] | None = None
        self.workers: dict[str, str] = {}
        self.keeps_running_trials = False  # after a reload: True on a chief (see reload)
        self._running_when_saved: dict = {}
        self.last_contact = time.monotonic()
        self._durations: list[float] = []
        self._started: dict[str, float] = {}
        self._returns: Counter = Counter()

    @kt.synchronized
    def create_trial(self, tuner_id):
        self.last_contact = time.monotonic()
        ongoing = self.ongoing_trials.get(tuner_id)
        if ongoing is not None:
            self._returns[ongoing.trial_id] += 1
            if self._returns[ongoing.trial_id] > MAX_RESTARTS:
                ongoing.status = kt.engine.trial.TrialStatus.FAILED
                ongoing.message = f"its worker {tuner_id} came back {MAX_RESTARTS} times without finishing it"
                self.end_trial(ongoing)
        self._check_budget()
        trial = super().create_trial(tuner_id)
        if trial.status == "RUNNING" and trial.trial_id not in self._started:
            self.workers[trial.trial_id] = tuner_id
            self._started[trial.trial_id] = time.monotonic()
            self.save()  # keras-tuner saved before its display and our worker map knew the trial
        return trial

    def _check_budget(self) -> None:
        if self.deadline is None or self.stopped_for_time:
            return
        expected = sum(self._durations) / len(self._durations) if self._durations else 0.0
        if time.monotonic() + expected > self.deadline:
            self.stopped_for_time = True
            self.max_trials = len(self.trials)  # keras-tuner's own stop; not saved in its state

    @kt.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        self.last_contact = time.monotonic()
        return super().update_trial(trial_id, metrics, step=step)

    def get_space(self):  # not synchronized, as keras-tuner's
        self.last_contact = time.monotonic()
        return super().get_space()

    def progress(self) -> tuple[int, dict[str, str], bool]:
        """Trials done, the trial each worker runs, whether any worker is registered: for the chief's loop, while
        the servicer's thread changes them. Copies (one step each under the GIL), not the oracle's lock: keras-tuner's
        is not released when a synchronized call raises, and the loop must still see the workers fall silent."""
        trials, ongoing = list(self.trials.values()), dict(self.ongoing_trials)
        done = sum(t.status in ("COMPLETED", "FAILED", "INVALID") for t in trials)
        return done, {w: t.trial_id for w, t in ongoing.items()}, bool(self.tuner_ids)

    @kt.synchronized
    def end_trial(self, trial):
        self.last_contact = time.monotonic()
        # keras-tuner's display raises KeyError for a trial it did not see begin (one begun before a chief restart)
        self._display.trial_start.setdefault(trial.trial_id, datetime.now())
        self._display.trial_number.setdefault(trial.trial_id, len(self.trials))
        started = self._started.pop(trial.trial_id, None)
        if started is not None:
            self._durations.append(time.monotonic() - started)
        super().end_trial(trial)
        self.save()  # keras-tuner saved before it let the worker go: the saved state now shows it free (lab's pool)
        self.ended_now += 1
        if self.on_trial_ended is not None:
            self.on_trial_ended()

    def _check_consecutive_failures(self):
        try:
            super()._check_consecutive_failures()
        except RuntimeError as e:
            self.failed_out = str(e).strip().splitlines()[-1]
            self.max_trials = len(self.trials)

    def get_state(self):
        return {**super().get_state(), "workers": self.workers}

    def set_state(self, state):
        super().set_state(state)
        self.workers.update(state.get("workers", {}))
        self._running_when_saved = dict(self.ongoing_trials)

    def reload(self):
        """keras-tuner's reload sends the trials that were running to its retry queue, for the next worker to ask.
        On a chief their workers may still be training them: they stay theirs, so no trial is trained twice, and
        a worker restarted with its ID gets its own back. (One process resumed: keras-tuner's retry.)"""
        super().reload()
        if not self.keeps_running_trials:
            return
        for tuner_id, trial in self._running_when_saved.items():
            self._retry_queue.remove(trial.trial_id)
            self.ongoing_trials[tuner_id] = trial
            self._started[trial.trial_id] = time.monotonic()


class RandomOracle(_AtomicSaves, Requeueing, _Bookkeeping, _Feasible, kt.oracles.RandomSearchOracle):
    pass


class BayesianOracle(_AtomicSaves, Requeueing, _Bookkeeping, _Feasible, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(_AtomicSaves, Requeueing, _Bookkeeping, _Feasible, kt.oracles.HyperbandOracle):
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
    oracle.init_bookkeeping()
    oracle.init_liveness(None)
    return oracle


class LabTuner(kt.Tuner):
    """Runs each trial as a lab run of the backend, with early stopping after `patience` epochs. In a distributed
    search (`role`), the chief serves the oracle and the workers train."""

    def __init__(self, oracle: kt.Oracle, backend: Backend, space: SearchSpace, base: ExperimentSettings, splits,
                 plan, patience: int, directory: Path, overwrite: bool, role: Role = Role("single"),
                 chief_wait: float = 180.0, worker_silence: float = 60.0):
        self.backend, self.space, self.base, self.splits, self.plan = backend, space, base, splits, plan
        self.patience, self.role, self.constraint = patience, role, oracle.constraint
        self._trained = 0
        self._state = oracle  # the oracle itself; a worker's self.oracle becomes keras-tuner's OracleClient
        oracle.keeps_running_trials = role.kind == "chief"
        oracle.silence = worker_silence if role.kind == "chief" else None
        super().__init__(oracle, hypermodel=partial(define, space=space), directory=str(directory),
                         project_name=PROJECT, overwrite=overwrite)
        if role.kind == "worker":
            self.heartbeat = Heartbeat(role.address, role.tuner_id, beat_interval(worker_silence))
            self.oracle = Requeueable(_Reconnecting(self.oracle, role, chief_wait), self.heartbeat)
        else:
            oracle.on_trial_ended = self.write_csv

    @property
    def trials_run(self) -> int:
        """Trials run in this session: by this worker, or (one process, chief) by the whole search."""
        return self._trained if self.role.kind == "worker" else self._state.ended_now

    @property
    def stopped_for_time(self) -> bool:
        return self._state.stopped_for_time

    def set_deadline(self, deadline: float) -> None:
        self._state.deadline = deadline

    def run_trial(self, trial, *args, **kwargs) -> dict:
        values = trial.hyperparameters.values
        problem = self.constraint.problem(values)
        if problem:  # the oracle does not propose these; a guard for edited state files
            raise kt.errors.FailedTrialError(f"this configuration cannot be built: {problem}")
        settings = trial_settings(self.base, overrides_of(values), epochs=values.get("tuner/epochs", self.base.epochs),
                                  profile=False)  # a trial's step profile would go nowhere
        trial_dir = Path(self.get_trial_dir(trial.trial_id))
        parent = values.get("tuner/trial_id")
        resume = _prepare(trial_dir, settings.to_dict(), Path(self.get_trial_dir(parent)) if parent else None)
        if resume:
            print(f"trial {trial.trial_id}: continues from the last checkpoint in {trial_dir}", flush=True)
        self._trained += 1
        trained = self.backend.train(settings, self.splits, trial_dir, self.plan, resume, patience=self.patience)
        metrics = trial_metrics(_history(trial_dir), values.get("tuner/initial_epoch", 0), trained.params.total)
        self.backend.log_extras(trial_dir, 0, {}, overrides_of(values),
                                {f"hp/{name}": metrics[name] for name in METRICS})
        return metrics

    def _get_tuner_fname(self):
        """The process that holds the oracle (one process, `tuner0.json`, or a chief, `chief.json`) reloads from
        whichever of the two files a search left: keras-tuner reloads the oracle only when this tuner's own file
        exists, so a search continued in the other mode (a lab on 1 device continued on 2) would start afresh."""
        own = Path(super()._get_tuner_fname())
        if self.role.kind == "worker" or own.exists():
            return str(own)
        other = own.with_name(f"{SINGLE_ID}.json" if self.role.kind == "chief" else "chief.json")
        return str(other if other.exists() else own)

    def save(self):
        """As keras-tuner's, but atomic (see _AtomicSaves), and only where the oracle lives: a worker writes
        nothing but its trial folders."""
        if self.role.kind == "worker":
            return
        self._state.save()
        write_text_atomic(self._get_tuner_fname(), json.dumps(self.get_state()))

    def rows(self) -> list[dict]:
        """Every trial so far, in the order they started (the oracle's process only)."""
        oracle = self._state
        return [trial_row(oracle.trials[trial_id], self.backend.name, oracle.workers.get(trial_id, SINGLE_ID),
                          oracle.retried.get(trial_id, ())) for trial_id in oracle.start_order]

    def write_csv(self) -> Path:
        return write_csv(self.rows(), Path(self.project_dir))

    def search_until_done(self, worker_timeout: float = 600.0) -> None:
        """The search: served (chief), trained (worker) or both (one process). LabError when it stopped after
        too many failed trials in a row, or when the workers went silent (chief)."""
        if self.role.kind == "chief":
            self.save()
            serve(self._state, self.role, worker_timeout)
        elif self.role.kind == "worker":
            with self.heartbeat:
                self.search()
            return
        else:
            self.search()
        if self._state.failed_out:
            self.write_csv()
            raise LabError(f"the search stopped after {self._state.max_consecutive_failed_trials} failed trials "
                           f"in a row, the last with: {self._state.failed_out}; see "
                           f"{Path(self.project_dir) / CSV_FILE}.")


def serve(oracle, role: Role, worker_timeout: float) -> None:
    """keras-tuner's chief (its OracleServicer over gRPC, as oracle_chief.start_server) with progress, and an
    end when the workers fall silent: keras-tuner's own waits forever for a worker that is gone."""
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    server = grpc.server(ThreadPoolExecutor(max_workers=1))  # as keras-tuner's start_server
    servicer = OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    serve_beats(server, oracle)
    server.add_insecure_port(role.address)
    server.start()
    print(f"chief: serving the search at {role.address}; start the workers (scripts/launch_search.py).", flush=True)
    shown = None
    try:
        while True:
            time.sleep(1)
            done, running, registered = oracle.progress()
            shown = _show_progress(done, running, oracle.max_trials, shown)
            quiet = time.monotonic() - oracle.last_contact
            # done: told a worker to stop, nothing runs, and the other workers were told too or are gone
            if servicer.stop_triggered and not running and (not registered or quiet > 3 * HEARTBEAT_S):
                return
            if quiet > worker_timeout:
                trials = ", ".join(f"{t} ({w})" for w, t in running.items()) or "none"
                raise LabError(f"no worker has called the chief for {quiet:.0f} s (running trials: {trials}); "
                               "restart the workers with the same KERASTUNER_TUNER_ID to continue their trials, and "
                               "this chief with the same command: the search state is saved.")
    finally:
        server.stop(grace=1)


def _show_progress(done: int, running: dict[str, str], max_trials: int, shown):
    now = (done, tuple(sorted(running.items())))
    if now != shown:
        workers = ", ".join(f"{t} on {w}" for w, t in sorted(running.items())) or "none"
        print(f"chief: {done} of {max_trials} trials done, running: {workers}", flush=True)
    return now


class _Reconnecting:
    """keras-tuner's OracleClient, whose calls wait for a chief that restarts: a call cut off by the chief's end is
    sent again once it is back (a restarted chief gives a worker its ongoing trial again), for up to `wait` s."""

    def __init__(self, client, role: Role, wait: float):
        self.client, self.role, self.wait = client, role, wait

    def __getattr__(self, name):
        attribute = getattr(self.client, name)
        if not callable(attribute):
            return attribute

        def call(*args, **kwargs):
            import grpc

            deadline = time.monotonic() + self.wait
            while True:
                try:
                    return attribute(*args, **kwargs)
                except grpc.RpcError as e:
                    if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise
                    if time.monotonic() > deadline:
                        raise LabError(f"lost the chief at {self.role.address} for {self.wait:g} s; restart it with "
                                       "the same command, then this worker (same KERASTUNER_TUNER_ID) to continue "
                                       "its trial.") from None
                    time.sleep(1)

        return call


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
