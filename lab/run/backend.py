"""The backend interface: what Lightning and Keras each implement, and the one table of backends.

The runner, the lab pipeline, the tuner and the benchmarks reach a backend through `get_backend`; code above
the backends may also import it plainly (`from lightning_modules import BACKEND`). The backend answers with a
`Trained` of plain data and never calls back into the shared layer. The table names packages rather than
importing them, so that the shared layer stays below the backends and a Lightning-only command never imports
TensorFlow; each package imports its training module only when BACKEND is asked for. (A Keras command does load torch:
core.frameworks imports it before TensorFlow on purpose.)
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from core.errors import LabError
from lab.config.machine import shared_cores
from lab.records.recording import best_epoch
from lab.reports.metrics import accuracy
from lab.specs.phases import PhaseStats

if TYPE_CHECKING:
    from datamodules.base import DataSplits
    from lab.config.devices import DevicePlan
    from lab.config.settings import ExperimentSettings
    from lab.records.recording import RunRecord
    from lab.specs.architectures import ParamCount
    from lab.specs.phases import Phase, TransferLog

# name -> "module:attribute" of the object implementing Backend
BACKENDS = {"lightning": "lightning_modules:BACKEND", "keras": "keras_models:BACKEND"}
TITLES = {"lightning": "PyTorch Lightning", "keras": "Keras"}
# One backend at a time, PyTorch first: PyTorch trained measurably slower in a process where Keras had
# trained under a tf.distribute strategy before (bench/README.md, bench/interference.py). GPU runs train
# under one (keras_models.training.placement); CPU runs use a plain device scope.
TRAINING_ORDER = ("lightning", "keras")


@dataclass
class Trained:
    """What a backend's training hands back; the runner does everything else with it."""

    test_logits: np.ndarray  # N x classes, float, before any softmax
    params: ParamCount
    record: RunRecord  # per-epoch history and timing
    device: str  # what trained, e.g. "cpu" or "gpu x1 (NVIDIA H200)"
    extra: dict = field(default_factory=dict)  # a transfer run's phases (lab.specs.phases.summarize)
    layout: dict = field(default_factory=dict)  # world size and batches (lab.config.devices.DevicePlan.batches)
    tested: dict = field(default_factory=dict)  # which weights gave test_logits (tested_weights)
    profile: dict | None = None  # where a steady step's time goes (lab.records.profile.breakdown), machine not named
    # Forward FLOPs per image the backend counted on its own network, for a zoo backbone, which no spec describes
    # (a spec network's are counted once, from its spec: lab.run.runner.flops_per_image)
    zoo_flops: int | None = None
    # How fast the tested network infers (lab.records.inference_timing.measure), machine not named; {"skipped": why}
    # where the cores were shared with other training; None when not measured (--profile false, a tuner trial)
    inference: dict | None = None
    # --bn-recalibration's record (lab.run.recalibration.recalibrate), None when off; test_logits are after it
    recalibration: dict | None = None


@dataclass(frozen=True)
class LoadedNetwork:
    """A finished run's network, loaded from one of its checkpoints to predict with."""

    input_shape: tuple[int, int, int]  # (H, W, C) of the uint8 images it takes
    logits: Callable[[np.ndarray], np.ndarray]  # uint8 N x H x W x C -> N x classes, before any softmax


@dataclass(frozen=True)
class Exported:
    """A backend's export of one checkpoint (export.py), with what its parity check compares."""

    reference: np.ndarray  # logits of the framework's float32 network in inference mode, on the parity images
    exported: np.ndarray  # logits of the exported file, run in its own runtime, on the same images
    details: dict = field(default_factory=dict)  # the opset (ONNX), the versions of the packages used, ...


class Backend(Protocol):
    name: str
    export_formats: tuple[str, ...]  # what `export` writes (lab.export.export_run.FORMATS)

    def plan_devices(self, settings: ExperimentSettings) -> DevicePlan:
        """The devices this run trains on; LabError when this machine cannot meet the request."""

    def is_writer(self, plan: DevicePlan) -> bool:
        """Whether this process writes the run's files (the only process, global rank 0, the chief); the others
        write nothing."""

    def train(self, settings: ExperimentSettings, splits: DataSplits, run_dir: Path, plan: DevicePlan,
              resume: bool = False, patience: int | None = None) -> Trained:
        """Train every phase of the run in run_dir (checkpoints, record.json, TensorBoard scalars), continuing
        from run_dir's last checkpoint when resume; stop early after `patience` epochs without a better
        val/acc when given. Returns the test-set logits and the history."""

    def log_extras(self, run_dir: Path, step: int, images: dict[str, np.ndarray], hparams: dict,
                   metrics: dict[str, float]) -> None:
        """Write figures (tag -> H x W x C uint8) and the HParams entry (settings, final metrics) to the run's
        TensorBoard log."""

    def load_network(self, checkpoint: Path, description: Callable[[], dict]) -> LoadedNetwork:
        """The network of one of this backend's checkpoints, without the run's data: a checkpoint holds its
        network (a Lightning one in its hyperparameters); `description`, the run's lab.specs.networks.describe,
        is called only for a Lightning checkpoint written before they did."""

    def export(self, checkpoint: Path, fmt: str, path: Path, images: np.ndarray,
               description: Callable[[], dict]) -> Exported:
        """Write the checkpoint's network, float32 and in inference mode, to `path` in `fmt` (one of
        export_formats), taking uint8 N x H x W x C images with a dynamic batch; run `images` through the network
        and through the written file in its own runtime. `description` as for load_network."""


def phase_stats(params: ParamCount, test_logits: np.ndarray, labels: np.ndarray) -> PhaseStats:
    """What a backend records at the end of a transfer phase."""
    return PhaseStats(params.trainable, params.non_trainable, accuracy(test_logits, labels))


def tested_weights(test_weights: str, history: list[dict], phases: list[Phase] = ()) -> dict:
    """results.json's test "weights" (last or best) and "weights_epoch": the last epoch, or the best
    checkpoint's (lab.records.recording.best_epoch), which holds the best epoch of the last phase."""
    if test_weights == "best":
        return {"weights": "best", "weights_epoch": best_epoch(history, phases[-1].start if phases else 0)}
    return {"weights": "last", "weights_epoch": history[-1]["epoch"] if history else None}


def trained(test_logits: np.ndarray, labels: np.ndarray, params: ParamCount, record: RunRecord, device: str,
            layout: dict, test_weights: str, log: TransferLog | None = None, phases: list[Phase] = (),
            profile: dict | None = None, zoo_flops: int | None = None, inference: dict | None = None,
            recalibration: dict | None = None) -> Trained:
    """The Trained a backend returns, test_logits from the `test_weights` (last or best); a transfer run (its
    log given) records its last phase first and reports its phases in `extra`."""
    tested = tested_weights(test_weights, record.history, phases)
    extra = {}
    if log is not None:
        log.finish_phase(len(phases) - 1, phase_stats(params, test_logits, labels))
        extra = log.summary(phases, record.history)
    return Trained(test_logits, params, record, device, extra, layout, tested, profile, zoo_flops, inference,
                   recalibration)


def inference_result(wanted: bool, plan: DevicePlan, measure: Callable[[], dict]) -> dict | None:
    """Trained.inference: None when not `wanted` (--profile false, a tuner trial, a process that writes nothing),
    {"skipped": why} where the cores are shared with other training (lab.config.machine.shared_cores), else
    measure()'s figures."""
    if not wanted:
        return None
    why = shared_cores(plan.accelerator, plan.world_size)
    return {"skipped": why} if why else measure()


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise LabError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}.")
    module, attribute = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def in_training_order(backends) -> list[str]:
    return sorted(backends, key=TRAINING_ORDER.index)


def parse_backends(text: str) -> list[str]:
    """--backends: names from the table, comma-separated, in the order given."""
    backends = [b.strip() for b in text.split(",") if b.strip()]
    if not backends or any(b not in BACKENDS for b in backends):
        raise LabError(f"--backends must list lightning and/or keras, got {text!r}.")
    return list(dict.fromkeys(backends))


def tensorboard_hparams(settings: ExperimentSettings) -> dict:
    """The settings as TensorBoard's HParams tab shows them: no paths, None as 'none'."""
    return {k: ("none" if v is None else v) for k, v in settings.to_dict().items()
            if k not in ("out", "data_dir", "name")}
