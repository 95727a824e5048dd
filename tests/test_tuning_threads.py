"""The oracle's overrides are `@kt.synchronized`, as keras-tuner asks of subclasses: calls from two threads (a
chief's gRPC threads) run one at a time, and a synchronized call that makes another (create_trial ending a trial
whose worker came back too often) does not deadlock."""
from __future__ import annotations

import copy
import threading
import time

from lab.tuning.engine import MAX_RESTARTS, make_oracle
from lab.tuning.space import Constraint, SearchSpace, define
from lab.tuning.trials import OBJECTIVE

SPACE = SearchSpace(blocks=(1, 2), filters=(8, 16), dense_units=(16, 32), batch_size=(64, 128))
HOLD_S = 0.2  # how long each call stays inside the oracle: two calls that overlap would show it
TIMEOUT_S = 30.0  # a deadlock fails the test instead of hanging it


def _oracle(tmp_path):
    oracle = make_oracle("random", Constraint((8, 8, 1), 10, None), max_trials=20, max_epochs=2, seed=0)
    oracle._set_project_dir(str(tmp_path), "p")
    hp = oracle.get_space()
    define(hp, SPACE)
    oracle.update_space(hp)
    return oracle


def _held(spans: list, lock: threading.Lock):
    """A stand-in for a step of the oracle's own code that records when each thread was inside it."""
    def step(*_, **__):
        start = time.monotonic()
        time.sleep(HOLD_S)
        with lock:
            spans.append((start, time.monotonic()))
    return step


def _in_threads(*calls) -> list:
    """Run the calls in threads started together; their results, or a failure when one is still running."""
    barrier, results = threading.Barrier(len(calls)), [None] * len(calls)

    def run(i, call):
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), f"the oracle's calls still run after {TIMEOUT_S:g} s: a deadlock"
    return results


def _serial(spans) -> bool:
    spans = sorted(spans)
    return all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:]))


def test_create_trial_from_two_threads_runs_one_at_a_time(tmp_path):
    oracle, spans = _oracle(tmp_path), []
    oracle._check_budget = _held(spans, threading.Lock())  # the override's own code, before keras-tuner's
    trials = _in_threads(lambda: oracle.create_trial("tuner0"), lambda: oracle.create_trial("tuner1"))
    assert len(spans) == 2 and _serial(spans), spans
    assert {t.status for t in trials} == {"RUNNING"} and trials[0].trial_id != trials[1].trial_id
    assert oracle.workers == {trials[0].trial_id: "tuner0", trials[1].trial_id: "tuner1"}


def test_end_trial_from_two_threads_runs_one_at_a_time(tmp_path):
    oracle, spans = _oracle(tmp_path), []
    trials = [oracle.create_trial(f"tuner{i}") for i in range(2)]
    oracle.on_trial_ended = _held(spans, threading.Lock())  # the override's own code, after keras-tuner's
    finished = []
    for trial in trials:  # as a worker sends them: its own copy, COMPLETED
        oracle.update_trial(trial.trial_id, {OBJECTIVE: 0.5})
        finished.append(copy.copy(trial))
        finished[-1].status = "COMPLETED"
    _in_threads(*(lambda t=t: oracle.end_trial(t) for t in finished))
    assert len(spans) == 2 and _serial(spans), spans
    assert oracle.ended_now == 2 and not oracle.ongoing_trials


def test_a_synchronized_call_that_ends_a_trial_does_not_deadlock(tmp_path):
    oracle = _oracle(tmp_path)
    first = oracle.create_trial("tuner0")

    def come_back():  # each return of tuner0 with its trial unfinished; the last one fails it, inside create_trial
        return [oracle.create_trial("tuner0") for _ in range(MAX_RESTARTS + 1)][-1]

    again, other = _in_threads(come_back, lambda: oracle.create_trial("tuner1"))
    assert oracle.trials[first.trial_id].status == "FAILED" and again.trial_id != first.trial_id
    assert other.status == "RUNNING" and other.trial_id not in (first.trial_id, again.trial_id)
