"""A lock held by a live process (fcntl.flock): the kernel lets it go when the process ends, killed or not, so a
lock file left behind by a dead process never blocks anyone."""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from core.errors import LabError


@contextlib.contextmanager
def held(path: Path, what: str):
    """Hold the lock at `path` for the block; LabError at once when a live process holds it. `what` names the
    work, e.g. 'the run lightning.first_cnn'."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise LabError(f"{what} is being trained by {holder} (lock {path}); wait for it to end, then run the "
                           "same command again.") from None
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)
