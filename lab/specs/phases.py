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

The "backbone" of a project model (lab.specs.models) is every layer but the final Dense; its blocks are the
conv blocks of its spec, then the dense block under the head (see spec_blocks). Where the initial
weights come from, and what becomes of the head: lab/specs/weight_sources.py.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import LabError
from core.io import write_json_atomic
from lab.settings_group import SettingsGroup
from lab.specs import architectures as A
from lab.specs.zoo import image_size, is_backbone

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings

FEATURE_EXTRACTION, FINE_TUNING, FROM_SCRATCH = "feature extraction", "fine-tuning", "from scratch"
PHASES_FILE = "phases.json"


@dataclass(frozen=True)
class TransferSpec(SettingsGroup):
    """The settings of a transfer run: the initial weights and the fine-tuning phase (the module docstring)."""

    weights: str | None
    unfreeze: str
    finetune_epochs: int
    finetune_lr: float | None

    @property
    def pretrained(self) -> bool:
        return is_pretrained(self)


def is_pretrained(settings: ExperimentSettings | TransferSpec) -> bool:
    return str(settings.weights or "none").lower() != "none"


def is_transfer(settings: ExperimentSettings) -> bool:
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


def plan_phases(settings: ExperimentSettings, num_blocks: int) -> list[Phase]:
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


def transfer_details(settings: ExperimentSettings, source, backbone: str, blocks: int, head: str) -> dict:
    """What a transfer run starts from, for its report: weights (a WeightsSource), backbone, blocks, head."""
    zoo = {"image_size": image_size(settings)} if is_backbone(settings.model) else {}
    return {"weights": source.describe(), "backbone": backbone, "blocks": blocks, "head": head, **zoo}


@dataclass(frozen=True)
class PhaseStats:
    """What the backend measures at the end of a phase."""

    trainable: int
    frozen: int
    test_acc: float


class TransferLog:
    """The run's transfer details and finished phases, kept in the run folder so a resumed run reports them too
    (by the process that writes the run's files: persist=False on the other ranks of a multi-process run)."""

    def __init__(self, run_dir: Path, persist: bool = True):
        self.path, self.persist = Path(run_dir) / PHASES_FILE, persist
        saved = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.details: dict = saved.get("details", {})
        self.stats = {int(i): PhaseStats(**s) for i, s in saved.get("phases", {}).items()}

    def set_details(self, details: dict) -> None:
        self.details = details
        self._save()

    def finish_phase(self, index: int, stats: PhaseStats) -> None:
        self.stats[index] = stats
        self._save()

    def reload(self) -> None:
        """Read back what the process that trained saved (the main process of a spawned run)."""
        self.__init__(self.path.parent, self.persist)

    def _save(self) -> None:
        if self.persist:
            write_json_atomic(self.path, {"details": self.details,
                                          "phases": {str(i): vars(s) for i, s in self.stats.items()}})

    def summary(self, phases: list[Phase], history: list[dict]) -> dict:
        return summarize(phases, self.stats, history, self.details)


def summarize(phases: list[Phase], stats: dict[int, PhaseStats], history: list[dict], details: dict) -> dict:
    """Trained.extra of a transfer run: the phases with their accuracy, time and parameter counts."""
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
