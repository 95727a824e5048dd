"""What training prints per epoch, decided once for both backends: a live bar, one plain line, or nothing.

--progress auto (the default) is a bar when standard output is a terminal and one plain line per epoch
otherwise (a log file, a pipe, a SLURM job, CI), where a bar's redraws would fill the log. The decision
travels in the environment, so that the processes a run starts (DDP ranks, spawned or launched) follow it.
"""
from __future__ import annotations

import contextlib
import os
import sys

from core.errors import LabError

MODES = ("auto", "bar", "epoch", "none")
ENV = "LAB_PROGRESS"
HELP = ("what training prints per epoch: bar (a live progress bar), epoch (one plain line per epoch, for log "
        "files), none, or auto: a bar on a terminal, one line per epoch otherwise (default: auto)")


def resolve(mode: str) -> str:
    """bar, epoch or none: auto decided by whether standard output is a terminal."""
    if mode not in MODES:
        raise LabError(f"progress must be one of {', '.join(MODES)}, got {mode!r}; set --progress or {ENV} to one.")
    if mode != "auto":
        return mode
    isatty = getattr(sys.stdout, "isatty", None)
    return "bar" if isatty is not None and isatty() else "epoch"


def progress_mode() -> str:
    """This process's mode: the one a command set (see `progress`), else auto decided now."""
    return resolve(os.environ.get(ENV) or "auto")


@contextlib.contextmanager
def progress(mode: str | None):
    """Decide the mode once for a command (None: as the environment says, else auto) and keep it for
    everything the command runs and starts."""
    before = os.environ.get(ENV)
    os.environ[ENV] = resolve(mode or before or "auto")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before


def epoch_line(row: dict, epochs: int) -> str:
    """An epoch as one plain line, e.g. 'epoch 3/10: train/loss 0.1234 train/acc 95.12% val/loss 0.2345
    val/acc 93.40% 12.3s'; row is a record's (lab.records.recording)."""
    return (f"epoch {row['epoch']}/{epochs}: train/loss {row['train/loss']:.4f} train/acc {row['train/acc']:.2%} "
            f"val/loss {row['val/loss']:.4f} val/acc {row['val/acc']:.2%} {row['time/epoch_s']:.1f}s")


def print_epoch(row: dict, epochs: int) -> None:
    """The epoch's line, when the mode is 'epoch'."""
    if progress_mode() == "epoch":
        print(epoch_line(row, epochs), flush=True)
