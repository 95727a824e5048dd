"""Transfer learning, backend-free: when a run is one, its phases, its blocks, and where its weights come from.

A transfer run (a zoo backbone, or --weights given, or --finetune-epochs) trains in up to two phases,
with epochs numbered continuously across them:

1. feature extraction (--epochs at --lr): the backbone is frozen and a new head trains;
2. fine-tuning (--finetune-epochs at --finetune-lr, default --lr / 10): the top --unfreeze blocks of
   the backbone train too.

A phase boundary starts a fresh optimizer (Keras recompiles; Lightning resets its optimizer state).
BatchNorm layers of a pretrained backbone never train: frozen, they run in inference mode in both
phases, so their statistics stay those of the pretraining data. With --weights none there is nothing
to protect, so nothing is frozen: every layer trains from random initialisation (the from-scratch
baseline), and --finetune-epochs only adds a phase at the lower learning rate.

The "backbone" of a project model (lab.models) is every layer but the final Dense; its blocks are the
conv blocks of its spec, then the dense block under the head (see spec_blocks).
"""
from __future__ import annotations

import json
import math
import socket
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab import architectures as A
from lab.io import write_json_atomic
from lab.backbones import is_backbone
from lab.errors import LabError

FEATURE_EXTRACTION, FINE_TUNING, FROM_SCRATCH = "feature extraction", "fine-tuning", "from scratch"
BEST_CHECKPOINT = {"lightning": "checkpoints/best.ckpt", "keras": "checkpoints/best.keras"}
PHASES_FILE = "phases.json"
FORMATS = {"lightning": ("torch",), "keras": ("keras", "hdf5")}
FORMAT_NAMES = {"torch": "a PyTorch file", "keras": "a Keras model file", "hdf5": "a Keras HDF5 weights file"}
ACCEPTED = {"lightning": "a PyTorch checkpoint (.ckpt from a Lightning run, or a .pth state dict)",
            "keras": "a Keras checkpoint (.keras from a Keras run) or a keras.applications .h5 weights file"}


def is_pretrained(settings) -> bool:
    return str(settings.weights or "none").lower() != "none"


def is_transfer(settings) -> bool:
    return is_backbone(settings.model) or is_pretrained(settings) or settings.finetune_epochs > 0


@dataclass(frozen=True)
class Phase:
    name: str
    start: int  # epochs done before it
    end: int  # epochs done after it
    lr: float
    trainable_blocks: int | None  # top backbone blocks that train; None: every layer trains


def check_unfreeze(text: str) -> None:
    """LabError unless text is 'all', a whole number of blocks, or a fraction in (0, 1]."""
    _unfreeze_value(text)


def _unfreeze_value(text: str) -> int | float | None:
    text = str(text).strip().lower()
    if text == "all":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    is_count = text.isdigit()
    if not (is_count or "." in text) or value < 0 or (not is_count and not 0 < value <= 1):
        raise LabError(f"unfreeze must be a number of blocks (e.g. 2), a fraction of them (e.g. 0.25) or 'all', "
                       f"got {text!r}.")
    return int(text) if is_count else value


def unfrozen_blocks(text: str, num_blocks: int) -> int:
    """How many top blocks --unfreeze makes trainable: a count, a fraction (rounded up) or 'all'."""
    value = _unfreeze_value(text)
    if value is None:
        return num_blocks
    if isinstance(value, float):
        return math.ceil(value * num_blocks)
    if value > num_blocks:
        raise LabError(f"unfreeze {value} asks for more blocks than the backbone's {num_blocks}; "
                       f"use at most {num_blocks}, a fraction or 'all'.")
    return value


def plan_phases(settings, num_blocks: int) -> list[Phase]:
    lr2 = settings.finetune_lr or settings.lr / 10
    end = settings.epochs + settings.finetune_epochs
    if not is_pretrained(settings):
        phases = [Phase(FROM_SCRATCH, 0, settings.epochs, settings.lr, None)]
        second = Phase(FINE_TUNING, settings.epochs, end, lr2, None)
    else:
        phases = [Phase(FEATURE_EXTRACTION, 0, settings.epochs, settings.lr, 0)]
        second = Phase(FINE_TUNING, settings.epochs, end, lr2, unfrozen_blocks(settings.unfreeze, num_blocks))
    return phases + ([second] if settings.finetune_epochs else [])


def phase_at(phases: list[Phase], epochs_done: int) -> int:
    """Index of the phase that trains the next epoch (the last phase once all are done)."""
    return next((i for i, p in enumerate(phases) if epochs_done < p.end), len(phases) - 1)


def trains_block(phase: Phase, block: int, num_blocks: int) -> bool:
    return phase.trainable_blocks is None or block >= num_blocks - phase.trainable_blocks


def has_params(layer: A.Layer) -> bool:
    return isinstance(layer, (A.Conv, A.Dense, A.BatchNorm))


def spec_blocks(spec: list[A.Layer]) -> list[list[int]]:
    """Blocks of a project model's backbone, as indices into its layers that hold weights (in order).

    The final Dense is the head, outside every block. A conv block ends at its pooling or dropout layer;
    Flatten / GlobalAvgPool start the dense part, where each Dense starts a block.
    """
    blocks: list[list[int]] = [[]]
    closed = dense = False
    weighted = -1
    for layer in spec[:-1]:
        if blocks[-1] and (isinstance(layer, (A.Flatten, A.GlobalAvgPool)) or (closed and isinstance(layer, A.Conv))
                           or (dense and isinstance(layer, A.Dense))):
            blocks.append([])
            closed = dense = False
        closed = closed or isinstance(layer, (A.MaxPool, A.Dropout))
        dense = dense or isinstance(layer, A.Dense)
        if has_params(layer):
            weighted += 1
            blocks[-1].append(weighted)
    return [b for b in blocks if b]


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
    other = [b for b, name in BEST_CHECKPOINT.items() if b != backend and (path / name).is_file()]
    why = f"it is a {other[0]} run" if other else f"it has no {BEST_CHECKPOINT[backend]}"
    raise LabError(f"--weights {path} is a folder, but not a finished {backend} run ({why}); "
                   f"give a {backend} run folder or a checkpoint file.")


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


@contextmanager
def download_timeout(seconds: float = 60):
    """A network that hangs fails after `seconds` instead of never (the frameworks' downloads set none)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def head_status(source_classes: int | None, classes: int, loaded: bool = False) -> str:
    """What became of the classification head when the weights were loaded."""
    if loaded:
        return f"loaded from the weights ({classes} classes)"
    if source_classes is None:
        return "new (random initialisation)"
    return f"replaced: the weights have {source_classes} classes, this run {classes}"


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


@dataclass(frozen=True)
class PhaseStats:
    """What the backend measures at the end of a phase."""

    trainable: int
    frozen: int
    test_acc: float


def save_phase_stats(run_dir: Path, index: int, stats: PhaseStats) -> None:
    """Kept in the run folder, so a resumed run still reports the phases it finished before."""
    saved = {str(i): vars(s) for i, s in load_phase_stats(run_dir).items()}
    write_json_atomic(Path(run_dir) / PHASES_FILE, {**saved, str(index): vars(stats)})


def load_phase_stats(run_dir: Path) -> dict[int, PhaseStats]:
    path = Path(run_dir) / PHASES_FILE
    if not path.is_file():
        return {}
    return {int(i): PhaseStats(**s) for i, s in json.loads(path.read_text()).items()}


def summarize(phases: list[Phase], stats: dict[int, PhaseStats], history: list[dict], details: dict) -> dict:
    """Outcome.extra of a transfer run: the phases with their accuracy, time and parameter counts."""
    rows = []
    for index, phase in enumerate(phases):
        epochs = [r for r in history if phase.start < r["epoch"] <= phase.end]
        stat = stats.get(index)
        rows.append({"name": phase.name, "epochs": [phase.start + 1, phase.end], "lr": phase.lr,
                     "trainable_blocks": phase.trainable_blocks,
                     "trainable_params": stat.trainable if stat else None,
                     "frozen_params": stat.frozen if stat else None, "test_acc": stat.test_acc if stat else None,
                     "val_acc": epochs[-1]["val/acc"] if epochs else None,
                     "time_s": round(sum(r["time/epoch_s"] for r in epochs), 3)})
    extra = {"transfer": details, "phases": rows}
    if len(phases) > 1:
        extra["phase_boundary_epoch"] = phases[0].end
    return extra
