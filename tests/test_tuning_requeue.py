"""A worker that falls silent for good: its trial goes back to the queue for another worker, the workers left wait
for it instead of ending, and the silent one's late results are ignored (lab.tuning.liveness). The oracle runs in
this process on a fake clock; the heartbeat over a real gRPC server on localhost."""
from __future__ import annotations

import copy
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.tuning.liveness import MAX_REQUEUES, beat_interval

SILENCE = 60.0


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chief_oracle(tmp_path, trials=10, silence=SILENCE):
    from lab.tuning.engine import make_oracle
    from lab.tuning.space import Constraint, SearchSpace, define

    oracle = make_oracle("random", Constraint((8, 8, 1), 10, None), trials, 2, seed=0)
    oracle._set_project_dir(str(tmp_path), "p")
    oracle.silence, oracle.clock = silence, Clock()
    hp = oracle.get_space()
    define(hp, SearchSpace())
    oracle.update_space(hp)
    return oracle


def pass_time(oracle, seconds: float, alive=("tuner0",)) -> None:
    """`seconds` go by; the workers `alive` beat at their end, the others stay silent."""
    oracle.clock.now += seconds
    for worker in alive:
        oracle.beat(worker, None)


def complete(oracle, trial, acc=0.5):
    trial.status = "COMPLETED"
    oracle.update_trial(trial.trial_id, {"val_acc": acc})
    oracle.end_trial(trial)


def test_a_silent_workers_trial_goes_to_the_next_worker_that_asks(tmp_path):
    oracle = chief_oracle(tmp_path)
    mine, lost = oracle.create_trial("tuner0"), oracle.create_trial("tuner1")
    pass_time(oracle, SILENCE - 1)
    complete(oracle, mine)
    assert oracle.create_trial("tuner0").trial_id not in {mine.trial_id, lost.trial_id}  # tuner1 may still live
    pass_time(oracle, 2)  # tuner1 silent for SILENCE + 1
    other = oracle.ongoing_trials["tuner0"]
    complete(oracle, other)
    again = oracle.create_trial("tuner0")
    assert again.trial_id == lost.trial_id and again.status == "RUNNING"
    assert "tuner1" not in oracle.ongoing_trials and "tuner1" not in oracle.tuner_ids
    assert oracle.retried == {lost.trial_id: ["tuner1"]} and oracle.workers[lost.trial_id] == "tuner0"


def test_a_worker_that_beats_keeps_its_trial(tmp_path):
    oracle = chief_oracle(tmp_path)
    oracle.create_trial("tuner0")
    held = oracle.create_trial("tuner1")
    for _ in range(20):  # 200 s of training, a beat every 10 s
        pass_time(oracle, 10)
        assert oracle.beat("tuner1", held.trial_id)
        oracle.requeue_silent()
    assert oracle.ongoing_trials["tuner1"] is held and not oracle.retried


def test_one_process_never_requeues(tmp_path):
    oracle = chief_oracle(tmp_path, silence=None)
    trial = oracle.create_trial("tuner0")
    oracle.clock.now += 10 * SILENCE
    assert oracle.create_trial("tuner0") is trial


def test_a_worker_waits_while_another_workers_trial_may_come_back(tmp_path):
    oracle = chief_oracle(tmp_path, trials=2)
    mine, lost = oracle.create_trial("tuner0"), oracle.create_trial("tuner1")
    complete(oracle, mine)
    waiting = oracle.create_trial("tuner0")  # no trial left to start, but tuner1's may come back
    assert waiting.status == "IDLE" and "tuner0" in oracle.tuner_ids
    pass_time(oracle, SILENCE + 1)
    again = oracle.create_trial("tuner0")
    assert again.trial_id == lost.trial_id
    complete(oracle, again)
    assert oracle.create_trial("tuner0").status == "STOPPED"  # nothing runs anywhere: the end
    assert not oracle.tuner_ids and not oracle.ongoing_trials


def test_a_worker_stops_when_the_search_stopped_for_time_or_failures(tmp_path):
    oracle = chief_oracle(tmp_path, trials=2)
    mine = oracle.create_trial("tuner0")
    oracle.create_trial("tuner1")
    complete(oracle, mine)
    oracle.failed_out = "ValueError: boom"
    assert oracle.create_trial("tuner0").status == "STOPPED"


def test_a_worker_back_after_its_trial_went_elsewhere_gets_another_and_its_result_is_ignored(tmp_path):
    oracle = chief_oracle(tmp_path)
    oracle.create_trial("tuner0")
    lost = copy.deepcopy(oracle.create_trial("tuner1"))  # what tuner1 holds in its own process
    pass_time(oracle, SILENCE + 1)
    complete(oracle, oracle.ongoing_trials["tuner0"])
    retaken = oracle.create_trial("tuner0")
    assert retaken.trial_id == lost.trial_id
    assert not oracle.beat("tuner1", lost.trial_id)  # what tuner1's heartbeat hears if it was only stalled
    assert oracle.create_trial("tuner1").trial_id not in {lost.trial_id, retaken.trial_id}  # back, same ID
    complete(oracle, retaken, acc=0.75)
    complete(oracle, lost, acc=0.25)  # tuner1's late result: ignored
    ended = oracle.trials[lost.trial_id]
    assert ended.status == "COMPLETED" and ended.metrics.get_last_value("val_acc") == 0.75
    assert oracle.end_order.count(lost.trial_id) == 1 and oracle.workers[lost.trial_id] == "tuner0"


def test_a_late_result_of_a_trial_still_in_the_queue_ends_it(tmp_path):
    oracle = chief_oracle(tmp_path)
    busy = oracle.create_trial("tuner0")
    lost = copy.deepcopy(oracle.create_trial("tuner1"))
    pass_time(oracle, SILENCE + 1)
    oracle.requeue_silent()
    assert oracle._retry_queue == [lost.trial_id]
    complete(oracle, lost)  # tuner1 was stalled, not dead, and finished it before another worker took it
    assert not oracle._retry_queue and oracle.trials[lost.trial_id].status == "COMPLETED"
    complete(oracle, busy)
    assert oracle.create_trial("tuner0").trial_id not in {busy.trial_id, lost.trial_id}


def test_a_trial_whose_workers_keep_falling_silent_fails(tmp_path):
    oracle = chief_oracle(tmp_path)
    trial = oracle.create_trial("tuner1")
    for n in range(MAX_REQUEUES):
        pass_time(oracle, SILENCE + 1, alive=())
        oracle.requeue_silent()
        if n < MAX_REQUEUES - 1:
            assert oracle.create_trial(f"tuner{n + 2}").trial_id == trial.trial_id
    assert oracle.trials[trial.trial_id].status == "FAILED" and not oracle._retry_queue
    assert "fell silent 3 times" in oracle.trials[trial.trial_id].message


def test_trials_csv_names_who_finished_a_trial_and_who_fell_silent(tmp_path):
    from lab.tuning.trials import csv_text, trial_row

    oracle = chief_oracle(tmp_path)
    oracle.create_trial("tuner0")
    lost = oracle.create_trial("tuner1")
    pass_time(oracle, SILENCE + 1)
    complete(oracle, oracle.ongoing_trials["tuner0"])
    complete(oracle, oracle.create_trial("tuner0"))
    rows = [trial_row(oracle.trials[t], "lightning", oracle.workers[t], oracle.retried.get(t, ()))
            for t in oracle.start_order]
    assert [(r["trial"], r["worker"], r["retried"]) for r in rows] == [("00", "tuner0", ""),
                                                                        (lost.trial_id, "tuner0", "tuner1")]
    assert csv_text(rows).splitlines()[0].startswith("trial,backend,worker,retried,status,")


def test_a_restarted_chief_remembers_the_retried_trials(tmp_path):
    oracle = chief_oracle(tmp_path)
    oracle.create_trial("tuner0")
    lost = oracle.create_trial("tuner1")
    pass_time(oracle, SILENCE + 1)
    oracle.requeue_silent()
    restarted = chief_oracle(tmp_path)
    restarted.keeps_running_trials = True
    restarted.reload()
    assert restarted.retried == {lost.trial_id: ["tuner1"]} and restarted._retry_queue == [lost.trial_id]
    assert restarted.create_trial("tuner2").trial_id == lost.trial_id


def test_a_silence_that_is_not_positive_is_refused(tmp_path, capsys):
    import tune_lightning
    from conftest import call_main

    code, _, err = call_main(tune_lightning.main, ["--dataset", "digits", "--worker-silence", "0", "--out",
                                                   str(tmp_path / "runs")], capsys)
    assert code == 2 and "worker-silence must be a positive number of seconds, got 0" in err, err[-2000:]
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


def test_beats_are_frequent_enough_for_the_silence():
    assert beat_interval(60) == 10 and beat_interval(20) == 5


# --- the heartbeat over gRPC --------------------------------------------------------------------------------

class FakeOracle:
    def __init__(self):
        self.calls = []

    def beat(self, tuner_id, trial_id):
        self.calls.append((tuner_id, trial_id))
        return trial_id in (None, "03")


@pytest.fixture
def chief():
    import grpc

    from lab.tuning.liveness import serve_beats

    oracle, server = FakeOracle(), grpc.server(ThreadPoolExecutor(1))
    serve_beats(server, oracle)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield oracle, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=0)


def test_a_heartbeat_names_its_worker_and_hears_whether_the_trial_is_still_its_own(chief):
    from lab.tuning.liveness import Heartbeat

    oracle, address = chief
    beat = Heartbeat(address, "tuner1", interval=0.05)
    assert beat.holds("03") and not beat.holds("04")
    beat.trial_id = "03"
    with beat:
        time.sleep(0.5)
    assert ("tuner1", "04") in oracle.calls and oracle.calls.count(("tuner1", "03")) >= 3


def test_a_worker_drops_the_result_of_a_trial_that_is_no_longer_its_own(chief, capsys):
    from lab.tuning.liveness import Heartbeat, Requeueable

    class Client:
        ended = []

        def end_trial(self, trial):
            self.ended.append(trial.trial_id)

    _, address = chief
    client = Requeueable(Client(), Heartbeat(address, "tuner1", interval=10))
    for trial_id in ("03", "04"):
        client.end_trial(type("Trial", (), {"trial_id": trial_id})())
    assert Client.ended == ["03"] and "trial 04 went to another worker" in capsys.readouterr().out


def test_a_heartbeat_without_a_chief_assumes_the_trial_is_its_own():
    from lab.tuning.liveness import Heartbeat

    with socket.socket() as s:  # a port nobody serves: the chief is restarting, say
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert Heartbeat(f"127.0.0.1:{port}", "tuner1", interval=10).holds("03")


# --- a real search: a chief and 2 workers on localhost, one of them killed for good ----------------------------

@pytest.mark.distributed  # 2-3 min on the shared 2-core machine: make test-distributed
def test_a_worker_killed_for_good_leaves_its_trial_to_the_other(spawn, tmp_path):
    from test_tuning_distributed import finish, free_port, ongoing, output, ready, rows, start, wait_for

    from lab.records.rundirs import CHECKPOINTS_DIR

    started = time.monotonic()
    port, more = free_port(), ("--max-trials", "3", "--max-epochs", "3", "--patience", "3", "--worker-silence", "15")
    workers = {i: start(spawn, "lightning", f"tuner{i}", port, tmp_path, *more) for i in ("0", "1")}
    ready(list(workers.values()))
    chief = start(spawn, "lightning", "chief", port, tmp_path, *more)
    folder = tmp_path / "d" / "lightning" / "tuning"

    def mid_trial() -> str | None:  # tuner1's trial once it has a checkpoint to continue from
        trial = ongoing(tmp_path).get("tuner1")
        return trial if trial and any((folder / f"trial_{trial}" / CHECKPOINTS_DIR).glob("*")) else None

    wait_for(mid_trial)
    trial = mid_trial()
    os.killpg(workers["1"].pid, signal.SIGKILL)
    workers["1"].wait()
    assert ongoing(tmp_path).get("tuner1") == trial  # killed mid-trial, not between trials
    chief_out, survivor = finish(chief), finish(workers["0"])
    table = rows(tmp_path, "lightning")
    assert [r["trial"] for r in table] == ["0", "1", "2"]  # every trial once
    assert {r["status"] for r in table} == {"COMPLETED"}
    retried = {r["trial"]: (r["worker"], r["retried"]) for r in table if r["retried"]}
    assert retried == {trial: ("tuner0", "tuner1")}, table
    assert "tuner1 silent for" in chief_out and f"its trial {trial} goes back to the queue" in chief_out
    assert f"trial {trial}: continues from the last checkpoint" in survivor
    elapsed = time.monotonic() - started
    print(f"the search with a worker killed for good took {elapsed:.0f} s")
    assert elapsed < 300, output(chief)[-2000:]


def test_the_saved_oracle_says_how_many_trials_a_worker_joining_now_could_take(tmp_path):
    from lab.tuning.trials import untaken_trials

    folder = tmp_path / "p"
    assert untaken_trials(folder, 4) == (0, set())  # nothing saved yet: no worker joins
    oracle = chief_oracle(tmp_path, trials=4)
    mine, _ = oracle.create_trial("tuner0"), oracle.create_trial("tuner1")
    assert untaken_trials(folder, 4) == (2, {"tuner0", "tuner1"})
    complete(oracle, mine)
    assert untaken_trials(folder, 4) == (2, {"tuner1"})
    oracle.create_trial("tuner0")
    assert untaken_trials(folder, 4) == (1, {"tuner0", "tuner1"})
    pass_time(oracle, SILENCE + 1)  # tuner1 silent: its trial back in the queue once the oracle is next asked
    oracle.create_trial("tuner2")
    assert untaken_trials(folder, 4) == (1, {"tuner0", "tuner2"})
