"""Initial weights, backend-free: what --weights points at, what kind of file it is, what becomes of the head.

--weights is none, imagenet (zoo backbones: the framework's download or cache), a weights file, a run
folder (its best checkpoint) or an experiment folder (its latest finished run of the backend). The file's
kind is read from its content, not its name, so a file neither framework wrote is refused up front.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import LabError
from lab.records.checkpoint_files import EXTENSIONS, best_path
from lab.records.results import RESULTS_FILE
from lab.records.rundirs import versions
from lab.specs.zoo import is_backbone

BEST_CHECKPOINT = {backend: best_path(backend) for backend in EXTENSIONS}
FORMATS = {"lightning": ("torch",), "keras": ("keras", "hdf5")}
FORMAT_NAMES = {"torch": "a PyTorch file", "keras": "a Keras model file", "hdf5": "a Keras HDF5 weights file"}
ACCEPTED = {"lightning": "a PyTorch checkpoint (.ckpt from a Lightning run, or a .pth state dict)",
            "keras": "a Keras checkpoint (.keras from a Keras run) or a keras.applications .h5 weights file"}


@dataclass(frozen=True)
class WeightsSource:
    kind: str  # "none", "imagenet" or "file"
    path: Path | None = None
    format: str | None = None  # "torch", "keras" or "hdf5" for files

    def describe(self) -> str:
        return {"none": "none (random initialisation)", "imagenet": "imagenet"}.get(self.kind, str(self.path))


def resolve_weights(weights: str | None, backend: str, model: str) -> WeightsSource:
    """Where --weights points, checked: LabError for a missing file or one this backend cannot read."""
    text = str(weights or "none").strip()
    if text.lower() == "none":
        return WeightsSource("none")
    if text.lower() == "imagenet":
        if not is_backbone(model):
            raise LabError(f"--weights imagenet is for the zoo backbones (resnet, mobilenet, efficientnet), "
                           f"not {model}; give a checkpoint of an earlier run or none.")
        return WeightsSource("imagenet")
    path = _checkpoint_path(Path(text), backend)
    fmt = checkpoint_format(path)
    if fmt not in FORMATS[backend]:
        raise LabError(f"--weights {path} is {FORMAT_NAMES[fmt]}, which the {backend} trainer cannot load; "
                       f"give it {ACCEPTED[backend]}.")
    return WeightsSource("file", path, fmt)


def _checkpoint_path(path: Path, backend: str) -> Path:
    if not path.exists():
        raise LabError(f"--weights {path} does not exist; give a checkpoint file, a run folder, imagenet or none.")
    if not path.is_dir():
        return path
    best = path / BEST_CHECKPOINT[backend]
    if best.is_file():
        return best
    finished = [run for _, run in versions(path / backend) if (run / RESULTS_FILE).is_file()]
    if finished and (finished[-1] / BEST_CHECKPOINT[backend]).is_file():  # an experiment folder: its latest run
        return finished[-1] / BEST_CHECKPOINT[backend]
    other = [b for b, name in BEST_CHECKPOINT.items() if b != backend and (path / name).is_file()]
    why = f"it is a {other[0]} run" if other else f"it has no {BEST_CHECKPOINT[backend]}"
    raise LabError(f"--weights {path} is a folder, but neither a finished {backend} run ({why}) nor an experiment "
                   f"folder holding one; give a {backend} run folder, an experiment folder or a checkpoint file.")


def checkpoint_format(path: Path) -> str:
    """'torch', 'keras' or 'hdf5', read from the file's content; LabError for anything else."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    if head[:1] == b"\x80":  # torch's legacy (pickle) format
        return "torch"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            names = []
        if any(name.endswith("data.pkl") for name in names):
            return "torch"
        if "config.json" in names and any(name.endswith(".weights.h5") for name in names):
            return "keras"
    raise LabError(f"--weights {path} is not a checkpoint (neither a PyTorch nor a Keras weights file); "
                   "give a .ckpt/.pth or .keras/.h5 file, a run folder, imagenet or none.")


def source_classes(path: Path | None) -> tuple[str, ...] | None:
    """The class names of the finished run a checkpoint file belongs to (RUN/checkpoints/FILE), if any."""
    try:
        return tuple(json.loads((path.parent.parent / RESULTS_FILE).read_text())["class_names"])
    except (AttributeError, OSError, ValueError, KeyError, TypeError):
        return None


def keeps_head(path: Path | None, class_names, shapes_fit: bool) -> bool:
    """The saved head is kept only when it was trained on this run's very classes."""
    return shapes_fit and source_classes(path) == tuple(class_names)


def head_status(source_count: int | None, class_names, loaded: bool = False, path: Path | None = None) -> str:
    """What became of the classification head when the weights (from `path`) were loaded."""
    ours = ", ".join(map(str, class_names))
    if loaded:
        return f"loaded with the weights, trained on the same classes ({ours})"
    if source_count is None:
        return "new (random initialisation)"
    theirs = source_classes(path)
    trained = ", ".join(theirs) if theirs else f"{source_count} classes"
    return f"replaced: the weights' head was trained on {trained}; this run has {ours}"


def mismatch_sentence(missing: list[str], unexpected: list[str], wrong: list[tuple[str, tuple, tuple]]) -> str:
    """The end of a LabError about weights of another architecture (after "--weights PATH ")."""
    parts = []
    if wrong:
        name, theirs, ours = wrong[0]
        parts.append(f"{len(wrong)} differ in shape (first: {name} is {theirs} in the file, {ours} here)")
    if missing:
        parts.append(f"{len(missing)} of this network's are missing from the file (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} in the file are not in this network (e.g. {unexpected[0]})")
    return (f"holds weights for another architecture: {'; '.join(parts)}; give weights saved by the same "
            "--model with the same size settings.")
