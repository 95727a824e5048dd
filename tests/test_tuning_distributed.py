"""One keras-tuner search over several processes, on keras-tuner's own engine: a chief serving the oracle on a
free port and workers training the trials; faults and bad input. Every process runs in its own session (the
`spawn` fixture kills what is left), with short waits so that nothing can hang the suite."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import tune_lightning
from conftest import call_main
from lab.tuning.cluster import READY

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
# --chief-wait: a chief started once its workers are ready takes as long to start as they did (10-14 s after their
# "ready" at a load of 4 on 2 cores, measured); a load of 15 could use up 60 s, and the workers then gave up (exit 2)
# before it served. They wait as long as a test waits for them.
TINY = ["--dataset", "digits", "--max-epochs", "1", "--no-retrain", "--name", "d", "--blocks", "1-2",
        "--filters", "8,16", "--dense-units", "16,32", "--batch-size", "64,128", "--chief-wait", str(TIMEOUT_S),
        "--worker-timeout", "60"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(spawn, backend: str, tuner_id: str, port: int, out: Path, *args) -> subprocess.Popen:
    """A chief or worker process; its output goes to a file beside `out`, read by finish() and ready()."""
    env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
           "KERASTUNER_ORACLE_PORT": str(port), "PYTHONPATH": str(ROOT)}
    log = out.parent / f"{out.name}-{tuner_id}-{time.monotonic_ns()}.log"
    with open(log, "w") as sink:
        process = spawn([ROOT / f"tune_{backend}.py", *TINY, "--out", out, *args], cwd=ROOT, env=env,
                        stdout=sink, stderr=subprocess.STDOUT)
    process.log = log
    return process


def output(process) -> str:
    return process.log.read_text(errors="replace")


def finish(process: subprocess.Popen) -> str:
    process.wait(timeout=TIMEOUT_S)
    assert process.returncode == 0, output(process)[-3000:]
    return output(process)


def ready(workers: list) -> None:
    """Until every worker has loaded its data and waits for the chief: none misses the first trials."""
    wait_for(lambda: all(READY in output(w) for w in workers))


def rows(out: Path, backend: str) -> list[dict]:
    with open(out / "d" / backend / "tuning" / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def run_search(spawn, backend: str, out: Path, trials: int = 4, *more) -> tuple[str, list[str]]:
    port, more = free_port(), ("--max-trials", str(trials), *more)
    workers = [start(spawn, backend, f"tuner{i}", port, out, *more) for i in (0, 1)]
    ready(workers)
    chief = start(spawn, backend, "chief", port, out, *more)
    return finish(chief), [finish(w) for w in workers]


def assert_every_trial_once(table: list[dict], trials: int) -> None:
    assert [r["trial"] for r in table] == [str(i) for i in range(trials)]  # none lost, none twice
    assert {r["status"] for r in table} == {"COMPLETED"}
    assert {r["worker"] for r in table} == {"tuner0", "tuner1"}  # each worker ran at least one


@pytest.mark.distributed  # 45 s: make test-distributed
def test_a_chief_and_two_workers_run_every_trial_once(spawn, tmp_path):
    chief, workers = run_search(spawn, "lightning", tmp_path)
    assert_every_trial_once(rows(tmp_path, "lightning"), 4)
    assert "chief: 4 of 4 trials done" in chief and "## The" in (tmp_path / "d/lightning/tuning/summary.md").read_text()
    assert "Search finished: 4 trial(s) run now" in chief
    written = {p.name for p in (tmp_path / "d/lightning/tuning").iterdir()}
    assert {"chief.json", "oracle.json", "trials.csv"} <= written  # keras-tuner's state: the chief's only
    assert not {"tuner0.json", "tuner1.json"} & written
    assert all("the chief writes the results" in w for w in workers)


@pytest.mark.distributed
def test_a_keras_search_over_two_workers(spawn, tmp_path):
    run_search(spawn, "keras", tmp_path)
    assert_every_trial_once(rows(tmp_path, "keras"), 4)


@pytest.mark.distributed
@pytest.mark.parametrize("tuner", ["hyperband", "bayesian"])
def test_every_tuner_runs_distributed(spawn, tmp_path, tuner):
    run_search(spawn, "lightning", tmp_path, 5, "--tuner", tuner, "--max-epochs", "3")
    table = rows(tmp_path, "lightning")
    assert len(table) == len({r["trial"] for r in table}) == 5 and {r["status"] for r in table} == {"COMPLETED"}
    if tuner == "hyperband":  # a promoted trial continues from its parent's checkpoints in the shared folder
        assert any(r.get("tuner/trial_id") for r in table), table


def ongoing(out: Path) -> dict:
    path = out / "d" / "lightning" / "tuning" / "oracle.json"
    try:
        return json.loads(path.read_text())["ongoing_trials"]
    except (OSError, ValueError, KeyError):
        return {}


def wait_for(condition, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.distributed
def test_a_worker_killed_mid_trial_gets_its_trial_back(spawn, tmp_path):
    # back well within --worker-silence: a worker silent for longer loses its trial (tests/test_tuning_requeue.py)
    port, more = free_port(), ("--max-trials", "4", "--max-epochs", "3", "--worker-silence", "300")
    first = start(spawn, "lightning", "tuner0", port, tmp_path, *more)
    killed = start(spawn, "lightning", "tuner1", port, tmp_path, *more)
    ready([first, killed])
    chief = start(spawn, "lightning", "chief", port, tmp_path, *more)
    wait_for(lambda: "tuner1" in ongoing(tmp_path))
    trial = ongoing(tmp_path)["tuner1"]
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    again = start(spawn, "lightning", "tuner1", port, tmp_path, *more)
    finish(chief), finish(first), finish(again)
    table = rows(tmp_path, "lightning")
    assert_every_trial_once(table, 4)
    assert {r["trial"]: r["worker"] for r in table}[trial] == "tuner1"


@pytest.mark.distributed
def test_a_restarted_chief_resumes_from_its_saved_oracle(spawn, tmp_path):
    port, more = free_port(), ("--max-trials", "4", "--max-epochs", "2")
    workers = [start(spawn, "lightning", f"tuner{i}", port, tmp_path, *more) for i in (0, 1)]
    ready(workers)
    chief = start(spawn, "lightning", "chief", port, tmp_path, *more)
    wait_for(lambda: (tmp_path / "d/lightning/tuning/trials.csv").exists())  # a trial has ended
    os.killpg(chief.pid, signal.SIGKILL)
    chief.wait()
    chief = start(spawn, "lightning", "chief", port, tmp_path, *more)
    finish(chief), [finish(w) for w in workers]
    assert_every_trial_once(rows(tmp_path, "lightning"), 4)


@pytest.mark.distributed
def test_a_one_process_search_continues_as_a_chief_and_workers_without_starting_over(spawn, tmp_path):
    more = ("--max-trials", "4", "--max-epochs", "2")
    single = spawn([ROOT / "tune_lightning.py", *TINY, "--out", tmp_path, *more], cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: (tmp_path / "d/lightning/tuning/trials.csv").exists())  # a trial has ended
    os.killpg(single.pid, signal.SIGKILL)
    single.wait()
    ended = sum(r["status"] == "COMPLETED" for r in rows(tmp_path, "lightning"))
    chief, workers = run_search(spawn, "lightning", tmp_path, 4, "--max-epochs", "2")
    first = re.search(r"chief: (\d+) of 4 trials done", chief)
    assert first and int(first[1]) >= ended >= 1, chief[-3000:]  # it reloaded the oracle (it said 0 before the fix)
    assert [r["trial"] for r in rows(tmp_path, "lightning")] == ["0", "1", "2", "3"]
    assert not any(re.search(r"trial 0: continues", w) for w in workers)  # the ended trial was not handed out again


@pytest.mark.distributed
def test_the_chief_gives_up_on_silent_workers(spawn, tmp_path):
    port = free_port()
    chief = start(spawn, "lightning", "chief", port, tmp_path, "--max-trials", "4", "--max-epochs", "3",
                  "--worker-timeout", "15")
    worker = start(spawn, "lightning", "tuner0", port, tmp_path, "--max-trials", "4", "--max-epochs", "3")
    wait_for(lambda: "tuner0" in ongoing(tmp_path))
    os.killpg(worker.pid, signal.SIGKILL)
    chief.wait(timeout=TIMEOUT_S)
    out = output(chief)
    assert chief.returncode == 2 and "no worker has called the chief" in out and "Traceback" not in out, out[-2000:]


@pytest.mark.distributed
def test_a_time_budget_is_the_chiefs(spawn, tmp_path):
    # 5 epochs a trial: 20 one-epoch trials of the digits end within the 18 s budget on a fast machine
    port, more = free_port(), ("--max-trials", "20", "--max-epochs", "5", "--time-budget", "0.3")
    chief = start(spawn, "lightning", "chief", port, tmp_path, *more)
    workers = [start(spawn, "lightning", f"tuner{i}", port, tmp_path, *more) for i in (0, 1)]
    out = finish(chief)
    [finish(w) for w in workers]
    assert "The time budget of 0.3 min is spent" in out
    table = rows(tmp_path, "lightning")
    assert 0 < len(table) < 20 and {r["status"] for r in table} == {"COMPLETED"}


# --- bad input, in this process --------------------------------------------------------------------------------

def _variables(monkeypatch, tuner_id="tuner0", port=None, skip=()):
    values = {"KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
              "KERASTUNER_ORACLE_PORT": str(port or free_port())}
    for name, value in values.items():
        if name in skip:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


@pytest.mark.parametrize("setup, extra, message", [
    (dict(skip=("KERASTUNER_ORACLE_PORT",)), [], "KERASTUNER_ORACLE_PORT is not set"),
    (dict(skip=("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")), [], "are not set"),
    (dict(), ["--chief-wait", "1"], "no chief answered at 127.0.0.1:"),
    (dict(), ["--overwrite"], "--overwrite is for the chief only"),
    (dict(), ["--devices", "2", "--accelerator", "cpu"], "one after another on one device"),
])
def test_bad_distributed_input_is_one_sentence(setup, extra, message, tmp_path, monkeypatch, capsys):
    _variables(monkeypatch, **setup)
    code, _, err = call_main(tune_lightning.main, [*TINY, "--out", str(tmp_path / "runs"), *extra], capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and message in lines[0], err[-2000:]
    assert "Traceback" not in err and not (tmp_path / "runs").exists()


def test_a_chief_refuses_a_port_in_use(tmp_path, monkeypatch, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        _variables(monkeypatch, "chief", taken.getsockname()[1])
        code, _, err = call_main(tune_lightning.main, [*TINY, "--out", str(tmp_path / "runs")], capsys)
    assert code == 2 and "the chief cannot serve on 127.0.0.1:" in err and "Traceback" not in err, err[-2000:]


@pytest.mark.distributed
def test_the_launcher_starts_a_chief_and_workers_and_ends_with_them(spawn, tmp_path):
    # 3 epochs a trial: with 1, one worker could run all 4 trials before the other's first call reached the chief.
    # The launcher starts the chief once both workers are ready (TINY's --chief-wait says why it is long)
    process = spawn([ROOT / "scripts" / "launch_search.py", "--workers", "2", "--log-dir", tmp_path / "logs", "--",
                     "tune_lightning.py", *TINY, "--max-trials", "4", "--max-epochs", "3", "--out", tmp_path], cwd=ROOT,
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0, out[-3000:]
    assert "chief: 4 of 4 trials done" in out
    assert_every_trial_once(rows(tmp_path, "lightning"), 4)
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["tuner0.log", "tuner1.log"]
    port = int(re.search(r"chief on 127\.0\.0\.1:(\d+)", out)[1])
    assert not search_processes(port)  # the workers and the chief, each in a session of its own, all ended


def search_processes(port: int) -> list[int]:
    """The processes alive (zombies not counted) that a launcher started for the chief at `port`."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if f"KERASTUNER_ORACLE_PORT={port}".encode() in environ.read_bytes().split(b"\0"):
                state = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
                found += [int(environ.parent.name)] if state not in ("Z", "X") else []
    return found


@pytest.mark.parametrize("argv, message", [
    (["--workers", "2"], "give the search after --"),
    (["--workers", "0", "--", "tune_keras.py"], "--workers must be at least 1"),
    (["--", "tune_keras.py", "--overwrite"], "--overwrite would let every worker delete"),
    (["--gpus", ",", "--", "tune_keras.py"], "--gpus must list GPU indices"),
])
def test_the_launcher_refuses_bad_input(argv, message, capsys):
    from scripts.launch_search import READY as LAUNCHER_READY
    from scripts.launch_search import main as launch

    assert LAUNCHER_READY == READY  # the launcher keeps its own copy: it imports nothing of the lab
    assert launch(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


# --- the oracle's bookkeeping, in this process ------------------------------------------------------------------

def _oracle(tmp_path, trials=10, reloaded_by=None):
    from lab.tuning.engine import make_oracle
    from lab.tuning.space import Constraint, SearchSpace, define

    oracle = make_oracle("random", Constraint((8, 8, 1), 10, None), trials, 2, seed=0)
    oracle._set_project_dir(str(tmp_path), "p")
    if reloaded_by:
        oracle.keeps_running_trials = reloaded_by == "chief"
        oracle.reload()
    hp = oracle.get_space()
    define(hp, SearchSpace())
    oracle.update_space(hp)
    return oracle


def test_a_worker_that_keeps_coming_back_fails_its_trial_and_gets_another(tmp_path):
    from lab.tuning.engine import MAX_RESTARTS

    oracle = _oracle(tmp_path)
    first = oracle.create_trial("tuner1")
    for _ in range(MAX_RESTARTS):  # killed and restarted: the same trial again
        assert oracle.create_trial("tuner1").trial_id == first.trial_id
    other = oracle.create_trial("tuner1")
    assert other.trial_id != first.trial_id and oracle.trials[first.trial_id].status == "FAILED"
    assert "came back 3 times" in oracle.trials[first.trial_id].message
    assert oracle.workers == {first.trial_id: "tuner1", other.trial_id: "tuner1"}


def test_a_restarted_chief_keeps_its_workers_running_trials(tmp_path):
    oracle = _oracle(tmp_path)
    running = {worker: oracle.create_trial(worker) for worker in ("tuner0", "tuner1")}  # then the chief is killed
    restarted = _oracle(tmp_path, reloaded_by="chief")
    assert restarted.workers == {trial.trial_id: worker for worker, trial in running.items()}
    assert restarted.create_trial("tuner2").trial_id not in {t.trial_id for t in running.values()}  # no second copy
    assert restarted.create_trial("tuner1").trial_id == running["tuner1"].trial_id  # a restarted worker's own trial
    trial = running["tuner0"]  # still training on its worker, which ends it with the restarted chief
    trial.status = "COMPLETED"
    restarted.update_trial(trial.trial_id, {"val_acc": 0.5})
    restarted.end_trial(trial)
    assert restarted.trials[trial.trial_id].status == "COMPLETED" and "tuner0" not in restarted.ongoing_trials


def test_a_resumed_single_process_search_retries_its_interrupted_trial(tmp_path):
    oracle = _oracle(tmp_path)
    interrupted = oracle.create_trial("tuner0")
    resumed = _oracle(tmp_path, reloaded_by="single")
    assert not resumed.ongoing_trials and resumed.create_trial("tuner0").trial_id == interrupted.trial_id
    assert resumed._returns[interrupted.trial_id] == 0  # an interruption is not a crash of its worker


def test_too_many_failures_stop_the_search_instead_of_raising_on_the_chief(tmp_path):
    oracle = _oracle(tmp_path)
    for _ in range(oracle.max_consecutive_failed_trials):
        trial = oracle.create_trial("tuner0")
        trial.status, trial.message = "FAILED", "Traceback...\nValueError: boom"
        oracle.end_trial(trial)  # keras-tuner raises here, inside the chief's EndTrial
    assert oracle.failed_out == "ValueError: boom"
    assert oracle.create_trial("tuner0").status == "STOPPED"


def test_past_the_budget_the_oracle_answers_stopped(tmp_path):
    oracle = _oracle(tmp_path)
    trial = oracle.create_trial("tuner0")
    oracle.deadline = time.monotonic() - 1
    assert oracle.create_trial("tuner0").trial_id == trial.trial_id  # a running trial still runs
    trial.status = "COMPLETED"
    oracle.update_trial(trial.trial_id, {"val_acc": 0.5})
    oracle.end_trial(trial)
    assert oracle.create_trial("tuner1").status == "STOPPED" and oracle.stopped_for_time
