"""A DDP process killed mid-epoch (rank 1, then rank 0, under Lightning's launcher): the process left ends with one
sentence naming it and saying how to continue, within seconds, and --resume then gives the uninterrupted run. A
process whose launcher died before any collective could notice ends by its watch, and so does a launcher whose
rank 1 died before the process group existed. Other errors pass untouched.

Each run is started in a session of its own, whose group is killed at the end (by the `spawn` fixture, the
`reference` fixture's finally, or the test's own where rank 1 outlives the session's leader).
"""
from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_distributed import ROOT, only_run, results
from test_distributed import run_command as run_to_end

EPOCHS = 8
RUN = ["train_lightning.py", "--dataset", "digits", "--model", "first_cnn", "--filters", "8", "--batch-size", "32",
       "--epochs", str(EPOCHS), "--accelerator", "cpu", "--devices", "2", "--progress", "epoch"]
SENTENCE = re.compile(rf"error: rank (\d) \(pid (\d+)\) died during epoch (\d+) of {EPOCHS}; run the same command "
                      r"with --resume to continue from the last checkpoint in (\S+)\.")
BEFORE = re.compile(r"error: rank 1 \(pid (\d+)\) died before training began; run the same command with --resume "
                    r"to start the run again in (\S+)\.")
FIRST_EPOCH = re.compile(rf"error: rank 1 \(pid (\d+)\) died during epoch 1 of {EPOCHS}; run the same command with "
                         r"--resume to start it again in (\S+)\.")
STOPPED = re.compile(rf"error: rank 1 \(pid (\d+)\) was stopped \(SIGSTOP or a debugger\) for the process group's "
                     rf"timeout of (\d+) s \(LAB_DDP_TIMEOUT_S sets it\) during epoch (\d+) of {EPOCHS}; run the same "
                     r"command with --resume to continue from the last checkpoint in (\S+)\.")
START_S = 240  # two processes start and train 2 epochs (a loaded 2-core machine)
SENTENCE_S = 5  # from the kill to the sentence
EXIT_S = 30  # from the kill to the end of the process left (interpreter shutdown takes seconds here under load)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    env = {**os.environ, "LAB_DDP_TIMEOUT_S": "60", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, *RUN, "--out", str(out)], cwd=ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = process.communicate(timeout=START_S)
        assert process.returncode == 0, err[-3000:]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return only_run(out, "lightning")


class Started:
    """A 2-process run, its output read as it comes: stdout lines, and each stderr line with its time."""

    def __init__(self, spawn, out: Path, launcher: tuple = (), timeout_s: int = 60):
        env = {**os.environ, "LAB_DDP_TIMEOUT_S": str(timeout_s), "PYTHONPATH": str(ROOT)}
        self.process = spawn([*launcher, *RUN, "--out", out], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.errors: list[tuple[float, str]] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self.stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.stderr_reader.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.errors.append((time.monotonic(), line))

    def wait_for_line(self, prefix: str) -> None:
        deadline = time.monotonic() + START_S
        while not self.lines.get(timeout=max(deadline - time.monotonic(), 0.1)).startswith(prefix):
            pass
        assert self.process.poll() is None, "the run ended before it could be killed"

    def rank_1(self) -> int:
        """The process Lightning's launcher (rank 0) started."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])

    def wait_for_error_line(self, text: str) -> None:
        deadline = time.monotonic() + START_S
        while not any(text in line for _, line in list(self.errors)):
            assert time.monotonic() < deadline and self.process.poll() is None, self.text()
            time.sleep(0.01)

    def text(self) -> str:
        return "".join(line for _, line in list(self.errors))

    def sentence(self, killed_at: float, pattern: re.Pattern = SENTENCE) -> tuple[re.Match, float]:
        """The one sentence the process left wrote, and how long after the kill; no traceback."""
        text = "".join(line for _, line in self.errors)
        assert "Traceback" not in text and "GLHF" not in text, text[-3000:]
        said = [(at, line) for at, line in self.errors if line.startswith("error:")]
        assert len(said) == 1, text[-3000:]
        match = pattern.fullmatch(said[0][1].strip())
        assert match, said[0][1]
        assert said[0][1] == self.errors[-1][1]  # the last line written
        return match, said[0][0] - killed_at


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def assert_resumes_to(spawn, out: Path, reference: Path) -> None:
    run_to_end(spawn, [*RUN, "--resume"], out)
    resumed = only_run(out, "lightning")
    assert [r["epoch"] for r in results(resumed)["history"]] == list(range(1, EPOCHS + 1))
    assert [r["val/acc"] for r in results(resumed)["history"]] == [r["val/acc"] for r in results(reference)["history"]]
    assert results(resumed)["test"]["accuracy"] == results(reference)["test"]["accuracy"]
    one, two = np.load(resumed / "predictions.npz"), np.load(reference / "predictions.npz")
    np.testing.assert_allclose(one["probs"], two["probs"], rtol=0, atol=1e-5)


def kill_and_wait(run, victim: int) -> tuple[float, float]:
    """SIGKILL `victim`; the run's process must then end with exit code 1: (when killed, seconds until it ended)."""
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    assert run.process.wait(timeout=EXIT_S) == 1
    exited = time.monotonic() - killed_at
    run.stderr_reader.join(timeout=EXIT_S)
    return killed_at, exited


@pytest.mark.distributed
def test_rank_1_killed_mid_epoch_ends_rank_0_with_one_sentence(spawn, tmp_path, reference):
    run = Started(spawn, tmp_path)
    run.wait_for_line("epoch 2/")
    victim = run.rank_1()
    killed_at, exited = kill_and_wait(run, victim)
    match, after = run.sentence(killed_at)
    assert (match[1], int(match[2])) == ("1", victim) and int(match[3]) >= 2, match[0]
    assert Path(match[4]) == only_run_folder(tmp_path)
    assert after < SENTENCE_S, after
    print(f"rank 1 killed: the sentence after {after:.2f} s, rank 0 ended after {exited:.2f} s")
    assert not any(tmp_path.rglob("results.json"))
    assert_resumes_to(spawn, tmp_path, reference)


@pytest.mark.distributed
def test_rank_0_killed_mid_epoch_ends_rank_1_with_one_sentence(spawn, tmp_path, reference):
    run = Started(spawn, tmp_path)
    run.wait_for_line("epoch 2/")
    survivor = run.rank_1()
    try:
        os.kill(run.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        run.stderr_reader.join(timeout=EXIT_S)  # rank 1 holds the pipe until it ends
        assert not run.stderr_reader.is_alive(), "rank 1 still runs"
        deadline = time.monotonic() + 5
        while not gone(survivor):
            assert time.monotonic() < deadline, "rank 1 closed its output but did not end"
            time.sleep(0.1)
        exited = time.monotonic() - killed_at
        match, after = run.sentence(killed_at)
        assert (match[1], int(match[2])) == ("0", run.process.pid) and int(match[3]) >= 2, match[0]
        assert Path(match[4]) == only_run_folder(tmp_path)  # rank 0's folder, which rank 1 learnt from it
        assert after < SENTENCE_S, after
        print(f"rank 0 killed: the sentence after {after:.2f} s, rank 1 ended after {exited:.2f} s")
        assert_resumes_to(spawn, tmp_path, reference)
    finally:  # rank 1 outlives the session's leader, which the spawn fixture looks at
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.process.pid, signal.SIGKILL)


@pytest.mark.distributed
def test_under_torchrun_the_process_left_says_the_sentence_before_torchrun_s_summary(spawn, tmp_path):
    run = Started(spawn, tmp_path, ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"))
    process = run.process
    run.wait_for_line("epoch 2/")
    victim = next(pid for pid, rank in torchrun_workers(process.pid) if rank == 1)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    assert process.wait(timeout=EXIT_S) != 0
    run.stderr_reader.join(timeout=EXIT_S)
    text = "".join(line for _, line in run.errors)
    said = [(at, line) for at, line in run.errors if line.startswith("error:")]
    assert len(said) == 1 and "GLHF" not in text and "[rank0]: Traceback" not in text, text[-3000:]
    match = SENTENCE.fullmatch(said[0][1].strip())
    assert match and (match[1], int(match[2])) == ("1", victim), said[0][1]
    assert said[0][0] - killed_at < SENTENCE_S
    assert "ChildFailedError" in text  # torchrun's own summary follows


@pytest.mark.distributed
@pytest.mark.parametrize("when", ["as it starts", "as the process group starts"])
def test_rank_1_killed_before_training_ends_rank_0_with_one_sentence(spawn, tmp_path, when):
    # as it starts: seconds before it could join the process group, where rank 0 waits (Lightning's observer would
    # SIGKILL rank 0 within 5 s, without a word); as the group starts: the group's first collective or the watch
    run = Started(spawn, tmp_path)
    if when == "as it starts":
        victim = wait_for_rank_1(run.process.pid)
    else:
        run.wait_for_error_line("GLOBAL_RANK: 1,")  # Lightning's line, as rank 1 joins the process group
        victim = run.rank_1()
    killed_at, exited = kill_and_wait(run, victim)
    if when == "as it starts":
        assert not any("processes registered" in line for _, line in run.errors)  # the group never formed
        match, after = run.sentence(killed_at, BEFORE)
        pid, folder = int(match[1]), match[2]
    else:  # a collective may already have run: then it died in the first epoch
        match, after = run.sentence(killed_at, re.compile(f"{BEFORE.pattern}|{FIRST_EPOCH.pattern}"))
        pid, folder = (int(match[1]), match[2]) if match[1] else (int(match[3]), match[4])
    assert pid == victim and Path(folder) == only_run_folder(tmp_path), match[0]
    assert after < SENTENCE_S, after
    assert not session_members(run.process.pid)  # rank 1 reaped, nothing else left
    print(f"rank 1 killed {when}: the sentence after {after:.2f} s, rank 0 ended after {exited:.2f} s")


@pytest.mark.distributed
def test_a_stopped_rank_1_is_named_in_a_warning_then_in_the_sentence_at_the_timeout(spawn, tmp_path):
    from lightning_modules.rank_death import STOPPED_S

    timeout_s = 15
    run = Started(spawn, tmp_path, timeout_s=timeout_s)
    run.wait_for_line("epoch 2/")
    victim = run.rank_1()
    try:
        os.kill(victim, signal.SIGSTOP)
        stopped_at = time.monotonic()
        assert run.process.wait(timeout=timeout_s + EXIT_S) == 1
        ended = time.monotonic() - stopped_at
        run.stderr_reader.join(timeout=EXIT_S)
        warned = [(at, line) for at, line in run.errors if line.startswith("warning: rank 1 ")]
        assert len(warned) == 1 and f"(pid {victim}) has been stopped for {STOPPED_S:g} s" in warned[0][1], run.text()
        assert STOPPED_S <= warned[0][0] - stopped_at < timeout_s, warned[0][0] - stopped_at
        match, after = run.sentence(stopped_at, STOPPED)
        assert int(match[1]) == victim and int(match[2]) == timeout_s and int(match[3]) >= 2, match[0]
        assert Path(match[4]) == only_run_folder(tmp_path)
        assert timeout_s <= after < timeout_s + SENTENCE_S, after
        assert not session_members(run.process.pid)  # the stopped rank 1 killed, not left behind
        print(f"rank 1 stopped: warned after {warned[0][0] - stopped_at:.2f} s, the sentence after {after:.2f} s, "
              f"rank 0 ended after {ended:.2f} s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def wait_for_rank_1(launcher: int) -> int:
    """The child of Lightning's launcher that runs as LOCAL_RANK=1, as soon as it runs (rank 0 may start other
    short-lived children, and a child shows its own environment only once it runs the new program)."""
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
            with contextlib.suppress(OSError):
                if b"LOCAL_RANK=1" in Path(f"/proc/{child}/environ").read_bytes().split(b"\0"):
                    return int(child)
        time.sleep(0.01)
    raise AssertionError("the launcher started no rank 1")


def session_members(session: int) -> list[int]:
    """The processes still alive in a session (zombies not counted)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session and fields[0] not in ("Z", "X"):
                members.append(int(stat.parent.name))
    return members


def torchrun_workers(agent: int) -> list[tuple[int, int]]:
    """(pid, RANK) of the processes torchrun's agent started."""
    workers = []
    for pid in Path(f"/proc/{agent}/task/{agent}/children").read_text().split():
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        workers.append((int(pid), int(next(v for v in env if v.startswith(b"RANK="))[5:])))
    return workers


def only_run_folder(out: Path) -> Path:
    folders = list(out.glob("*/lightning/version_*"))
    assert len(folders) == 1, folders
    return folders[0]


# --- the parts, quickly ---------------------------------------------------------------------------------------------

class FakeTrainer:
    current_epoch, max_epochs = 2, 5
    strategy = type("Strategy", (), {"launcher": None})()


@pytest.mark.parametrize("message, error_type, lost", [
    ("[gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:28893: Connection reset by peer. GLHF!", RuntimeError,
     True),
    ("[gloo/transport/tcp/pair.cc:589] Connection closed by peer [127.0.0.1]:40404", "DistBackendError", True),
    ("mat1 and mat2 shapes cannot be multiplied (4x3 and 4x5)", RuntimeError, False),
    ("Connection reset by peer", ValueError, False),
])
def test_only_a_failed_collective_s_lost_peer_counts_as_a_death(message, error_type, lost):
    import torch

    from lightning_modules.rank_death import is_peer_loss

    error_type = getattr(torch.distributed, error_type) if isinstance(error_type, str) else error_type
    assert is_peer_loss(error_type(message)) is lost


def test_a_dead_peer_becomes_one_sentence_and_other_errors_pass(tmp_path, monkeypatch):
    import socket

    from core.errors import RunStopped
    from lightning_modules.rank_death import LAUNCHER_VARIABLE, RankDeath, one_sentence_on_death

    monkeypatch.delenv(LAUNCHER_VARIABLE, raising=False)
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    death = RankDeath(tmp_path, 0)
    death.trainer, death.ranks = FakeTrainer(), [(socket.gethostname(), os.getpid()), (socket.gethostname(), dead.pid)]
    for error in (ValueError("a bug of this rank"), RuntimeError("Connection reset by peer, in a message of ours")):
        with pytest.raises(type(error)), one_sentence_on_death(death):
            raise error  # on_exception is not called outside a Trainer: nothing to say
    with pytest.raises(RunStopped) as stopped, one_sentence_on_death(death):
        error = RuntimeError("[pair.cc:545] Read error [127.0.0.1]:1: Connection reset by peer.")
        death.on_exception(FakeTrainer(), None, error)
        raise error
    assert str(stopped.value) == (f"rank 1 (pid {dead.pid}) died during epoch 3 of 5; run the same command with "
                                  f"--resume to continue from the last checkpoint in {tmp_path}.")
    assert stopped.value.exit_code == 1 and LAUNCHER_VARIABLE not in os.environ


@pytest.mark.parametrize("error_type, message, timed_out", [
    (RuntimeError, "[../gloo/transport/tcp/pair.cc:598] Application timeout caused pair closure", True),
    ("DistStoreError", "Timed out after 16 seconds waiting for clients. 1/2 clients joined.", True),
    (RuntimeError, "DataLoader timed out after 5 seconds", False),
    (ValueError, "Timed out", False),
])
def test_only_a_collective_s_whole_timeout_counts_as_a_stopped_peer(error_type, message, timed_out):
    import torch

    from lightning_modules.rank_death import is_peer_loss, is_peer_timeout

    error = (getattr(torch.distributed, error_type) if isinstance(error_type, str) else error_type)(message)
    assert is_peer_timeout(error) is timed_out and not is_peer_loss(error)


def test_before_the_ranks_meet_only_rank_0_names_the_run_s_folder(tmp_path):
    from lightning_modules.rank_death import RankDeath

    assert RankDeath(tmp_path, 0).sentence(1, 42) == (
        f"rank 1 (pid 42) died before training began; run the same command with --resume to start the run again in "
        f"{tmp_path}.")
    assert RankDeath(tmp_path / "a guess", 1).sentence(0, 7).endswith("start the run again in its folder.")


LAUNCHER = """
import os, subprocess, sys, time
env = {**os.environ, "LAB_DDP_LAUNCHER_PID": str(os.getpid()), "LOCAL_RANK": "1"}
subprocess.Popen([sys.executable, "-c", sys.argv[1]], env=env)
time.sleep(300)
"""
WATCHED = """
import os, time
from pathlib import Path
from lightning_modules.rank_death import RankDeath, watch_launcher
watch_launcher(RankDeath(Path("runs"), rank=1))
print(os.getpid(), flush=True)
time.sleep(300)
"""


@pytest.mark.distributed
def test_a_process_whose_launcher_dies_outside_a_collective_ends_with_the_sentence(spawn):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LAB_DDP_LAUNCHER_PID", None)
    launcher = spawn(["-c", LAUNCHER, WATCHED], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     text=True)
    try:
        watched = int(launcher.stdout.readline())
        os.kill(launcher.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        err = launcher.stderr.read()  # until the watched process ends
        after = time.monotonic() - killed_at
        assert err == (f"error: rank 0 (pid {launcher.pid}) died before training began; run the same command with "
                       "--resume to start the run again in its folder.\n"), err
        assert after < SENTENCE_S, after
        deadline = time.monotonic() + 5  # its output closes as it exits, a moment before it is gone from /proc
        while not gone(watched):
            assert time.monotonic() < deadline, "the watched process closed its output but did not end"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launcher.pid, signal.SIGKILL)
