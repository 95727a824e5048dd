"""A DDP process that dies ends the run on the processes left with one sentence: which rank died, in which
epoch, and that the same command with --resume continues from the last checkpoint (exit code 1, no traceback).

- gloo fails a collective at once when a peer's connection closes ("Connection reset by peer"). `RankDeath`, a
  callback, turns that error, and only that error, into `RunStopped` on the ranks left. It learns every rank's
  host and pid when the process group starts, and names the rank whose process is gone from this machine.
- Rank 0 under Lightning's launcher takes its children off the launcher's process observer first: the observer
  SIGKILLs rank 0 within 5 s of a child's death, which could come before the sentence. Children still alive are
  then killed and reaped here, as the observer would have.
- A process that Lightning's launcher started watches the launcher (rank 0 of its machine, whose pid is in
  LAUNCHER_VARIABLE): when it is gone and no failed collective has said so within a second (it died before the
  process group existed, or while this rank computes), the watch writes the sentence and ends the process,
  instead of leaving it to wait for the process-group timeout (30 minutes by default).
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

from core.errors import RunStopped

LAUNCHER_VARIABLE = "LAB_DDP_LAUNCHER_PID"
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")
WATCH_EVERY_S = 0.2
GRACE_S = 1.0  # a failed collective of the main thread, when there is one, says it first
DYING_S = 2.0  # how long a dead peer's process may take to be gone from /proc after its sockets closed


def is_peer_loss(error: BaseException) -> bool:
    """Whether a collective failed because another process of the run closed its connection."""
    return isinstance(error, RuntimeError) and any(text in str(error) for text in PEER_LOST)


@contextmanager
def one_sentence_on_death(death: RankDeath | None):
    """Around a multi-process fit (`death` None otherwise): a peer's death becomes RunStopped, and the processes
    Lightning's launcher starts from this one inherit its pid (one started by the launcher keeps the one it
    inherited, and watches it)."""
    if death is None:
        yield
        return
    marked = os.environ.setdefault(LAUNCHER_VARIABLE, str(os.getpid())) == str(os.getpid())
    stop = watch_launcher(death)
    try:
        yield
    except Exception:
        death.raise_if_stopped()
        raise
    finally:
        if stop is not None:
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

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.trainer = trainer
        everyone = [None] * trainer.world_size
        torch.distributed.all_gather_object(everyone, (socket.gethostname(), os.getpid(), str(self.run_dir)))
        self.ranks = [(host, pid) for host, pid, _ in everyone]
        self.run_dir = Path(everyone[0][2])  # rank 0's: the other ranks of a new run only guessed its number

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not is_peer_loss(exception) or self.ending.is_set():
            return
        self.ending.set()
        children = _take_children(trainer.strategy.launcher)
        # at once, and not cut short: under torchrun, the agent's SIGTERM follows within a fraction of a second
        with _sigterm_ignored():
            self.stopped = RunStopped(self.sentence(self._dead_rank()), reported=True)
            _say(self.stopped)
        _end(children)

    def raise_if_stopped(self) -> None:
        if self.stopped is not None:
            raise self.stopped from None

    def sentence(self, dead: int | None, pid: int | None = None) -> str:
        if dead is not None and pid is None and dead < len(self.ranks):
            pid = self.ranks[dead][1]
        who = "another process of this run" if dead is None else f"rank {dead}" + (f" (pid {pid})" if pid else "")
        trainer = self.trainer
        if trainer is None or not self.ranks:
            return (f"{who} died before training began; run the same command with --resume to start the run "
                    "again in its folder.")
        when = f"during epoch {trainer.current_epoch + 1} of {trainer.max_epochs}"
        how = "continue from the last checkpoint" if trainer.current_epoch > 0 else "start it again"
        return f"{who} died {when}; run the same command with --resume to {how} in {self.run_dir}."

    def _dead_rank(self) -> int | None:
        """The rank whose process is gone from this machine (waiting briefly for one that is still exiting); the
        other rank of two when none is seen."""
        here, deadline = socket.gethostname(), time.monotonic() + DYING_S
        while True:
            dead = [rank for rank, (host, pid) in enumerate(self.ranks) if host == here and not _alive(pid)]
            if dead or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if dead:
            return dead[0]
        return 1 - self.rank if len(self.ranks) == 2 else None


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
        if stop.wait(GRACE_S) or death.ending.is_set():
            return
        death.ending.set()
        launcher_rank = death.rank - int(os.environ.get("LOCAL_RANK", 0))
        _say(RunStopped(death.sentence(launcher_rank, int(launcher))))
        os._exit(RunStopped.exit_code)

    threading.Thread(target=watch, name="lab-launcher-watch", daemon=True).start()
    return stop


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


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not); from /proc, else from signal 0."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc
        try:
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
