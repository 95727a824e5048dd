"""A DDP process that dies ends the run on the processes left with one sentence: which rank died, in which
epoch, and that the same command with --resume continues from the last checkpoint (exit code 1, no traceback).

- gloo fails a collective at once when a peer's connection closes ("Connection reset by peer"). `RankDeath`, a
  callback, turns that error, and only that error, into `RunStopped` on the ranks left. It learns every rank's
  host and pid when the process group starts, and names the rank whose process is gone from this machine.
- Rank 0 under Lightning's launcher takes its children off the launcher's process observer as soon as the observer
  starts (the observer SIGKILLs rank 0 within 5 s of a child's death, without a word) and watches them itself: a
  child that dies where no failed collective says so within a second (before the process group exists, say)
  ends rank 0 with the sentence. Children still alive are then killed and reaped here, as the observer would have.
- A process that Lightning's launcher started watches the launcher (rank 0 of its machine, whose pid is in
  LAUNCHER_VARIABLE): when it is gone and no failed collective has said so within a second (it died before the
  process group existed, or while this rank computes), the watch writes the sentence and ends the process,
  instead of leaving it to wait for the process-group timeout (30 minutes by default).
- A process that is stopped (SIGSTOP, a debugger) neither dies nor answers: the others wait for it up to the
  process group's timeout. Each process warns once when another process of the run on its machine has been
  stopped for STOPPED_S (a state in /proc, no heartbeat of ours); when gloo's timeout fails the collective, the
  process left ends with the sentence as for a death, rank 0 killing the children it started.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback
from torch.distributed.constants import default_pg_timeout

from core.errors import RunStopped, warn_once
from lightning_modules.distributed import TIMEOUT_VARIABLE

LAUNCHER_VARIABLE = "LAB_DDP_LAUNCHER_PID"
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")
PEER_TIMEOUT = ("Application timeout caused pair closure", "Timed out")  # gloo's collectives, the store's wait
WATCH_EVERY_S = 0.2
OBSERVER = "child-process-observer"  # the name of Lightning's _ChildProcessObserver thread
GRACE_S = 1.0  # a failed collective of the main thread, when there is one, says it first
DYING_S = 2.0  # how long a dead peer's process may take to be gone from /proc after its sockets closed
OBSERVER_S = 5.0  # Lightning's observer's period: once the ranks have met, the watch waits as long for a collective
STOPPED_S = 10.0  # a process of the run stopped this long is named in a warning
HALTED = ("T", "t")  # /proc states of a stopped process: by a signal, by a debugger


def timeout_s() -> float:
    """The process group's timeout (lightning_modules.distributed)."""
    return float(os.environ.get(TIMEOUT_VARIABLE) or default_pg_timeout.total_seconds())


def is_peer_loss(error: BaseException) -> bool:
    """Whether a collective failed because another process of the run closed its connection."""
    return isinstance(error, RuntimeError) and any(text in str(error) for text in PEER_LOST)


def is_peer_timeout(error: BaseException) -> bool:
    """Whether a collective, or the process group's start, waited for another process for its whole timeout."""
    return isinstance(error, RuntimeError) and any(text in str(error) for text in PEER_TIMEOUT)


@contextmanager
def one_sentence_on_death(death: RankDeath | None, launcher=None):
    """Around a multi-process fit (`death` None otherwise; `launcher` the Trainer's strategy's): a peer's death
    becomes RunStopped, and the processes Lightning's launcher starts from this one inherit its pid (one started by
    the launcher keeps the one it inherited, and watches it; the launcher watches the processes it starts)."""
    if death is None:
        yield
        return
    marked = os.environ.setdefault(LAUNCHER_VARIABLE, str(os.getpid())) == str(os.getpid())
    watches = (watch_launcher(death), watch_children(death, launcher), watch_stopped(death))
    stops = [stop for stop in watches if stop is not None]
    try:
        yield
    except Exception:
        death.raise_if_stopped()
        raise
    finally:
        for stop in stops:
            stop.set()
        if marked:
            del os.environ[LAUNCHER_VARIABLE]


class RankDeath(Callback):
    def __init__(self, run_dir: Path, rank: int):
        self.run_dir, self.rank = run_dir, rank
        self.ranks: list[tuple[str, int]] = []  # (host, pid) of every rank, once the process group exists
        self.trainer = None
        self.stopped: RunStopped | None = None
        self.ending = threading.Event()  # set once this process knows the run is over
        self.children: list = []  # rank 0 under Lightning's launcher: the processes it started (local ranks 1...)
        self._lock = threading.Lock()

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.trainer = trainer
        everyone = [None] * trainer.world_size
        torch.distributed.all_gather_object(everyone, (socket.gethostname(), os.getpid(), str(self.run_dir)))
        self.ranks = [(host, pid) for host, pid, _ in everyone]
        self.run_dir = Path(everyone[0][2])  # rank 0's: the other ranks of a new run only guessed its number

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        timed_out = is_peer_timeout(exception)
        if not (timed_out or is_peer_loss(exception)) or not self.claim():
            return
        children = self.children or _take_children(trainer.strategy.launcher)  # not yet adopted: the observer's
        # at once, and not cut short: under torchrun, the agent's SIGTERM follows within a fraction of a second
        with _sigterm_ignored():
            text = self._timeout_sentence() if timed_out else self.sentence(*self._dead_rank(children))
            self.stopped = RunStopped(text, reported=True)
            _say(self.stopped)
        _end(children)  # a stopped child too: SIGKILL ends it

    def claim(self) -> bool:
        """True for the first caller only: the one that writes the sentence and ends the run."""
        with self._lock:
            first = not self.ending.is_set()
            self.ending.set()
            return first

    def raise_if_stopped(self) -> None:
        if self.stopped is not None:
            raise self.stopped from None

    def sentence(self, dead: int | None, pid: int | None = None, event: str = "died") -> str:
        if dead is not None and pid is None and dead < len(self.ranks):
            pid = self.ranks[dead][1]
        who = "another process of this run" if dead is None else f"rank {dead}" + (f" (pid {pid})" if pid else "")
        trainer = self.trainer
        if trainer is None or not self.ranks:  # only rank 0 knows the folder of a new run before the ranks meet
            where = self.run_dir if self.rank == 0 else "its folder"
            return (f"{who} {event} before training began; run the same command with --resume to start the run "
                    f"again in {where}.")
        when = f"during epoch {trainer.current_epoch + 1} of {trainer.max_epochs}"
        how = "continue from the last checkpoint" if trainer.current_epoch > 0 else "start it again"
        return f"{who} {event} {when}; run the same command with --resume to {how} in {self.run_dir}."

    def peers_here(self) -> dict[int, int]:
        """{pid: rank} of the other processes of this run on this machine that this one knows of."""
        here = socket.gethostname()
        peers = {pid: rank for rank, (host, pid) in enumerate(self.ranks) if host == here}
        peers.update({child.pid: self.rank + local for local, child in enumerate(list(self.children), 1)})
        launcher = os.environ.get(LAUNCHER_VARIABLE)
        if launcher:
            peers.setdefault(int(launcher), self.rank - int(os.environ.get("LOCAL_RANK", 0)))
        peers.pop(os.getpid(), None)
        return peers

    def _timeout_sentence(self) -> str:
        halted = [(rank, pid) for pid, rank in self.peers_here().items() if _state(pid) in HALTED]
        limit = f"the process group's timeout of {timeout_s():g} s ({TIMEOUT_VARIABLE} sets it)"
        if halted:
            return self.sentence(*halted[0], event=f"was stopped (SIGSTOP or a debugger) for {limit}")
        return self.sentence(None, event=f"did not answer within {limit}")

    def _dead_rank(self, children: list) -> tuple[int | None, int | None]:
        """The rank and pid of the process gone from this machine (waiting briefly for one that is still exiting):
        a child of this launcher, or a rank whose pid the ranks exchanged; the other rank of two when none is seen."""
        here, deadline = socket.gethostname(), time.monotonic() + DYING_S
        while True:
            dead = [(rank, pid) for rank, (host, pid) in enumerate(self.ranks) if host == here and not _alive(pid)]
            dead += _dead_children(children, self.rank)
            if dead or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if dead:
            return dead[0]
        return (1 - self.rank if len(self.ranks) == 2 else None), None


def watch_launcher(death: RankDeath) -> threading.Event | None:
    """On a process Lightning's launcher started: a thread that ends it with the sentence when the launcher is
    gone (see the module's docstring). Returns the event that stops the watch, None where there is none."""
    launcher = os.environ.get(LAUNCHER_VARIABLE)
    if launcher is None or int(launcher) == os.getpid():
        return None
    stop = threading.Event()

    def watch() -> None:
        while os.getppid() == int(launcher):
            if stop.wait(WATCH_EVERY_S):
                return
        if stop.wait(GRACE_S) or not death.claim():
            return
        launcher_rank = death.rank - int(os.environ.get("LOCAL_RANK", 0))
        _say(RunStopped(death.sentence(launcher_rank, int(launcher))))
        os._exit(RunStopped.exit_code)

    threading.Thread(target=watch, name="lab-launcher-watch", daemon=True).start()
    return stop


def watch_children(death: RankDeath, launcher) -> threading.Event | None:
    """On rank 0 under Lightning's launcher: a thread that takes the processes the launcher starts off its observer,
    and ends this process with the sentence when one of them dies and no failed collective has said so within a
    second (see the module's docstring). Returns the event that stops the watch, None where there is none."""
    environment = getattr(launcher, "cluster_environment", None)
    if getattr(launcher, "procs", None) is None or environment is None or environment.creates_processes_externally:
        return None  # no launcher, or one that starts nothing (torchrun, SLURM)
    stop = threading.Event()

    def watch() -> None:
        children = _adopt_children(death, launcher, stop)
        while children is not None and not stop.wait(WATCH_EVERY_S):
            dead = _dead_children(children, death.rank)
            if not dead:
                continue
            if stop.wait(GRACE_S if not death.ranks else OBSERVER_S) or not death.claim():
                return
            _say(RunStopped(death.sentence(*dead[0])))
            _end(children)
            os._exit(RunStopped.exit_code)

    threading.Thread(target=watch, name="lab-children-watch", daemon=True).start()
    return stop


def watch_stopped(death: RankDeath) -> threading.Event:
    """A thread that warns once when another process of the run on this machine has been stopped for STOPPED_S (see
    the module's docstring). Returns the event that stops the watch."""
    stop = threading.Event()

    def watch() -> None:
        since: dict[int, float] = {}
        while not stop.wait(1.0):
            for pid, rank in death.peers_here().items():
                if _state(pid) not in HALTED:
                    since.pop(pid, None)
                elif time.monotonic() - since.setdefault(pid, time.monotonic()) >= STOPPED_S:
                    warn_once(f"rank {rank} (pid {pid}) has been stopped for {STOPPED_S:g} s (SIGSTOP or a "
                              f"debugger); the other processes wait for it up to the process group's timeout of "
                              f"{timeout_s():g} s ({TIMEOUT_VARIABLE} sets it), then end the run; kill -CONT {pid} "
                              "lets it go on.")

    threading.Thread(target=watch, name="lab-stopped-watch", daemon=True).start()
    return stop


def _adopt_children(death: RankDeath, launcher, stop: threading.Event) -> list | None:
    """The launcher's children, once its observer thread watches them, taken out of the observer's list (which it
    then finds empty, and ends); the launcher and `death` keep them in a list of their own (the launcher forwards
    signals to them, in its kill). None when the watch stops first."""
    while not stop.wait(WATCH_EVERY_S):
        watched = launcher.procs
        if watched and any(getattr(thread, "_child_processes", None) is watched for thread in threading.enumerate()
                           if thread.name == OBSERVER):
            launcher.procs = death.children = list(watched)
            watched.clear()
            return death.children
    return None


def _dead_children(children: list, rank: int) -> list[tuple[int, int]]:
    """(rank, pid) of the launcher's children (local ranks 1, 2, ... after `rank`, the launcher's) that have ended
    other than cleanly."""
    return [(rank + local, child.pid) for local, child in enumerate(list(children), 1) if child.poll() not in (None, 0)]


@contextmanager
def _sigterm_ignored():
    """SIGTERM ignored meanwhile (Lightning's handler would run a collective, which fails and ends the sentence)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _say(stopped: RunStopped) -> None:
    print(f"error: {stopped}", file=sys.stderr, flush=True)


def _state(pid: int) -> str | None:
    """A process's state letter in /proc (R, S, T, Z...), None when it is gone or there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not); from /proc, else from signal 0."""
    state = _state(pid)
    if state is not None:
        return state not in ("Z", "X")
    if os.path.isdir("/proc"):
        return False
    try:  # no /proc
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _take_children(launcher) -> list:
    """The processes Lightning's launcher started from this one, taken out of the list its observer thread
    polls (the same list object), so that the observer does not SIGKILL this process."""
    children = getattr(launcher, "procs", None)
    if not children:
        return []
    taken = list(children)
    children.clear()
    return taken


def _end(children: list) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.wait()
