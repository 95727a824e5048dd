"""The checkpoint files of a run folder (OUT/.../version_N/checkpoints/), named alike on both backends: the best
epoch's `best.<ext>`, which --test-weights best tests and --weights RUN_DIR loads, and the last epoch's, which
--resume continues from. Each backend's own format gives the extension."""
from __future__ import annotations

from lab.records.rundirs import CHECKPOINTS_DIR

BEST = "best"
LAST = "last"
EXTENSIONS = {"lightning": "ckpt", "keras": "keras"}


def best_file(backend: str) -> str:
    return f"{BEST}.{EXTENSIONS[backend]}"


def last_file(backend: str, epochs: int | None = None) -> str:
    """Lightning's one last.ckpt, overwritten; Keras' last-epoch=NNN.keras, the epochs it holds in its name."""
    return f"{LAST}.{EXTENSIONS[backend]}" if epochs is None else f"{LAST}-epoch={epochs:03d}.{EXTENSIONS[backend]}"


def best_path(backend: str) -> str:
    """The best checkpoint relative to a run folder."""
    return f"{CHECKPOINTS_DIR}/{best_file(backend)}"
