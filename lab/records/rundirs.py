"""Run folders: OUT/<experiment>/<backend>/version_N, as TensorBoard and Lightning lay them out."""
from __future__ import annotations

import json
import re
from pathlib import Path

from core.errors import LabError
from core.io import write_json_atomic
from lab.records.results import RESULTS_FILE

SETTINGS_FILE = "settings.json"
CHECKPOINTS_DIR = "checkpoints"  # both backends' last and best checkpoints
_VERSION = re.compile(r"version_(\d+)$")


def best_checkpoint(run_dir: Path, filename: str) -> Path:
    """The run's best checkpoint (the best epoch of its last phase), for --test-weights best."""
    path = run_dir / CHECKPOINTS_DIR / filename
    if not path.is_file():
        raise LabError(f"{run_dir} has no best checkpoint ({filename}) to test; run with --test-weights last.")
    return path


def versions(parent: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in parent.glob("version_*") if (m := _VERSION.search(p.name))]
    return sorted(found)


def next_run_dir(out: str | Path, experiment: str, backend: str) -> Path:
    """The folder new_run_dir would make now, not made."""
    parent = Path(out) / experiment / backend
    return parent / f"version_{versions(parent)[-1][0] + 1 if versions(parent) else 0}"


def new_run_dir(out: str | Path, experiment: str, backend: str) -> Path:
    parent = Path(out) / experiment / backend
    parent.mkdir(parents=True, exist_ok=True)
    number = int(next_run_dir(out, experiment, backend).name.split("_")[1])
    while True:
        run_dir = parent / f"version_{number}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            number += 1


def find_resumable(resume: str, out: str | Path, experiment: str, backend: str) -> Path:
    """The run folder --resume names, or the latest of this experiment and backend."""
    if resume != "latest":
        run_dir = Path(resume)
        if not (run_dir / SETTINGS_FILE).exists():
            raise LabError(f"{run_dir} is not a run folder of this project (no {SETTINGS_FILE}); "
                           "give --resume a folder like runs/<experiment>/<backend>/version_N.")
    else:
        found = versions(Path(out) / experiment / backend)
        if not found:
            raise LabError(f"there is no run of {experiment} on {backend} under {out} to resume; "
                           "drop --resume to start one.")
        run_dir = found[-1][1]
    if (run_dir / RESULTS_FILE).exists():
        raise LabError(f"{run_dir} already finished; its results are in {run_dir / RESULTS_FILE}, "
                       "drop --resume to start a new run.")
    return run_dir


def save_settings(run_dir: Path, settings: dict) -> None:
    write_json_atomic(run_dir / SETTINGS_FILE, settings)


def load_settings(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / SETTINGS_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LabError(f"cannot read the settings of {run_dir} ({e}); start a new run instead.") from None
