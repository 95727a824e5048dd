"""The checkpoint files of a run folder (OUT/.../version_N/checkpoints/), named alike on both backends: the best
epoch's `best.<ext>`, which --test-weights best tests and --weights RUN_DIR loads, and the last epoch's, which
--resume continues from. Each backend's own format gives the extension."""
from __future__ import annotations

import re
from pathlib import Path

from lab.records.rundirs import CHECKPOINTS_DIR

BEST = "best"
LAST = "last"
EXTENSIONS = {"lightning": "ckpt", "keras": "keras"}
_KERAS_LAST = re.compile(rf"{LAST}-epoch=(\d+)\.keras$")


def best_file(backend: str) -> str:
    return f"{BEST}.{EXTENSIONS[backend]}"


def last_file(backend: str, epochs: int | None = None) -> str:
    """Lightning's one last.ckpt, overwritten; Keras' last-epoch=NNN.keras, the epochs it holds in its name."""
    return f"{LAST}.{EXTENSIONS[backend]}" if epochs is None else f"{LAST}-epoch={epochs:03d}.{EXTENSIONS[backend]}"


def best_path(backend: str) -> str:
    """The best checkpoint relative to a run folder."""
    return f"{CHECKPOINTS_DIR}/{best_file(backend)}"


def keras_last_files(directory: str | Path) -> list[tuple[Path, int]]:
    """Keras' saved last checkpoints in `directory`, newest epoch first, as (path, epochs done)."""
    found = [(path, int(match.group(1))) for path in Path(directory).glob(f"{LAST}-epoch=*.keras")
             if (match := _KERAS_LAST.search(path.name))]
    return sorted(found, key=lambda item: -item[1])


def checkpoint_file(run_dir: Path, backend: str, which: str) -> Path | None:
    """The run's best or last checkpoint, None when it has none."""
    directory = run_dir / CHECKPOINTS_DIR
    if which == LAST and backend == "keras":
        found = keras_last_files(directory)
        return found[0][0] if found else None
    path = directory / (best_file(backend) if which == BEST else last_file(backend))
    return path if path.is_file() else None
