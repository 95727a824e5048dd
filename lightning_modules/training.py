"""The Lightning backend: one training loop for every run, a plain run being a run of one phase.

A transfer run (lab.specs.phases) trains its phases in the same Trainer, epochs numbered continuously;
callbacks.lightning_finetuning.PhaseFinetuning freezes and unfreezes blocks at the phase boundary.
"""
from __future__ import annotations

import os
import signal
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.profilers import PassThroughProfiler

from callbacks.lightning_checkpoint import BEST_FILENAME, EpochCheckpoint, LastPhaseBest
from callbacks.lightning_finetuning import PhaseFinetuning
from callbacks.lightning_profile import StepClock
from callbacks.lightning_progress import ThrottledRichProgressBar
from callbacks.lightning_recorder import LightningRecorder
from core.errors import LabError
from datamodules.base import DataSplits
from datamodules.batching import EVAL_BATCH_SIZE
from datamodules.torch_data import ArraysDataModule
from lab.config.devices import DevicePlan, plan_devices
from lab.progress import progress_mode
from lab.records.recording import RunRecord
from lab.records.rundirs import CHECKPOINTS_DIR, best_checkpoint
from lab.reports.report import save_augmented_grid
from lab.run.backend import Trained, phase_stats, trained
from lab.specs.models import model_spec
from lab.specs.phases import TransferLog, is_transfer, plan_phases, transfer_details
from lab.specs.weight_sources import resolve_weights
from lightning_modules.classifier import ImageClassifier, TransferClassifier
from lightning_modules.compiling import check_compiler, compile_network
from lightning_modules.components import build_network, count_params
from lightning_modules.components.augment import apply_numpy, build_augment
from lightning_modules.components.backbones import TransferNet, build_transfer_net
from lightning_modules.distributed import build_strategy
from lightning_modules.profiling import measure
from lightning_modules.weights import load_initial_weights

LAST_CKPT = "last.ckpt"


class LightningBackend:
    name = "lightning"

    def plan_devices(self, settings) -> DevicePlan:
        gpus = torch.cuda.device_count()
        _stop_probing_for_gpus(gpus)
        plan = plan_devices(settings, gpus)
        if settings.sync_batchnorm and plan.accelerator == "cpu" and plan.world_size > 1:
            raise LabError("--sync-batchnorm needs GPUs on Lightning: PyTorch's SyncBatchNorm runs on CUDA only; "
                           "drop it on the CPU.")
        if settings.compile:
            check_compiler(plan.accelerator)
        return plan

    def is_writer(self, plan: DevicePlan) -> bool:
        return plan.global_rank == 0

    def train(self, settings, splits: DataSplits, run_dir: Path, plan: DevicePlan, resume: bool = False,
              patience: int | None = None) -> Trained:
        with _ctrl_c_as_keyboard_interrupt():
            return train(settings, splits, run_dir, plan, resume, patience)

    def log_extras(self, run_dir: Path, step: int, images: dict[str, np.ndarray], hparams: dict,
                   metrics: dict[str, float]) -> None:
        logger = _logger(run_dir)
        for tag, array in images.items():
            logger.experiment.add_image(tag, array, step, dataformats="HWC")
        logger.log_hyperparams(hparams, metrics)
        logger.experiment.close()


BACKEND = LightningBackend()


def _stop_probing_for_gpus(gpus: int) -> None:
    """On a machine without a usable NVIDIA GPU, a CUDA build of torch looks for one again at every Adam step:
    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, so the optimizer's capture check loads NVML each time, 0.2
    to 0.7 ms a step on the development machine (bench/README.md). An empty CUDA_VISIBLE_DEVICES answers at once;
    it hides nothing, as there is nothing to hide, and a CUDA_VISIBLE_DEVICES already set is left alone."""
    if gpus == 0 and torch.backends.cuda.is_built() and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def build_module(settings, splits: DataSplits, augment=None) -> ImageClassifier:
    spec = model_spec(settings, splits.input_shape, splits.num_classes)
    net = build_network(spec, splits.input_shape, splits.mean, splits.std)
    return ImageClassifier(net, splits.num_classes, settings.optimizer, settings.lr, augment)


def train(settings, splits: DataSplits, run_dir: Path, plan: DevicePlan, resume: bool = False,
          patience: int | None = None, callbacks: tuple = ()) -> Trained:
    """Backend.train; `callbacks` are added to the Trainer's (tests observe training with them)."""
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    ckpt = _resume_checkpoint(run_dir) if resume else None
    writer = plan.global_rank == 0  # the other ranks of a multi-process run write nothing
    record = RunRecord(run_dir, len(splits.train), persist=writer)
    module, tnet, log = _module(settings, splits, run_dir, fresh=ckpt is None, persist=writer)
    phases = plan_phases(settings, len(tnet.blocks) if tnet else 0)
    if tnet is not None:
        def phase_end(index: int, trainer: pl.Trainer) -> None:  # the next epoch puts the module back in training
            logits = predict_logits(module, splits.test.images, trainer.strategy.root_device)
            log.finish_phase(index, phase_stats(count_params(module.net), logits, splits.test.labels))

        callbacks = (PhaseFinetuning(tnet, phases, _epochs_done(ckpt), on_phase_end=phase_end), *callbacks)
    if patience is not None:
        callbacks = (*callbacks, EarlyStopping("val/acc", mode="max", patience=patience))
    if settings.save_augmented and writer:
        save_augmented_grid(run_dir, settings, splits, apply_numpy)
    clock = StepClock() if settings.profile and writer else None
    callbacks = (*callbacks, clock) if clock else callbacks
    trainer = pl.Trainer(**_trainer_args(settings, plan, run_dir, record, phases, callbacks),
                         strategy=build_strategy(plan, transfer=tnet is not None))
    with warnings.catch_warnings():
        # A Hyperband continuation starts from its parent's checkpoints, copied from the parent's folder.
        warnings.filterwarnings("ignore", message="The dirpath has changed")
        data = ArraysDataModule(splits, settings.batch_size, settings.seed)
        trainer.fit(module, datamodule=data, ckpt_path=ckpt)
    profile = measure(trainer, module, data, clock) if clock else None
    if plan.strategy == "ddp_spawn" and plan.world_size > 1:  # trained in spawned processes: read what rank 0 saved
        record.restore(epochs_done=phases[-1].end)
        if log is not None:
            log.reload()
    device = trainer.strategy.root_device
    if settings.test_weights == "best" and writer:  # the other ranks' test logits are never used
        _load_best(module, run_dir)
    return trained(predict_logits(module, splits.test.images, device), splits.test.labels, count_params(module.net),
                   record, plan.describe(torch.cuda.get_device_name(device) if device.type == "cuda" else None),
                   plan.batches(settings.batch_size), settings.test_weights, log, phases, profile)


def _load_best(module: ImageClassifier, run_dir: Path) -> None:
    """The weights of the best checkpoint (callbacks.lightning_checkpoint)."""
    path = best_checkpoint(run_dir, f"{BEST_FILENAME}.ckpt")
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])


def _module(settings, splits: DataSplits, run_dir: Path, fresh: bool,
            persist: bool) -> tuple[ImageClassifier, TransferNet | None, TransferLog | None]:
    """The LightningModule (its network compiled with --compile) and, for a transfer run, its blocks and phase
    log; a fresh transfer run loads its initial weights (a resumed one continues from its checkpoint instead)."""
    module, tnet, log = _eager_module(settings, splits, run_dir, fresh, persist)
    if settings.compile:
        compile_network(module.net)
    return module, tnet, log


def _eager_module(settings, splits: DataSplits, run_dir: Path, fresh: bool,
                  persist: bool) -> tuple[ImageClassifier, TransferNet | None, TransferLog | None]:
    if not is_transfer(settings):
        return build_module(settings, splits, build_augment(settings)), None, None
    source = resolve_weights(settings.weights, "lightning", settings.model)
    tnet, log = build_transfer_net(settings, splits), TransferLog(run_dir, persist)
    if fresh:
        head = load_initial_weights(tnet, source, splits.class_names)
        log.set_details(transfer_details(settings, source, tnet.zoo_name or settings.model, len(tnet.blocks), head))
    module = TransferClassifier(tnet.net, splits.num_classes, settings.optimizer, settings.lr, build_augment(settings))
    return module, tnet, log


def _trainer_args(settings, plan: DevicePlan, run_dir: Path, record: RunRecord, phases: list,
                  extra_callbacks: tuple) -> dict:
    checkpoints, epochs = run_dir / CHECKPOINTS_DIR, phases[-1].end
    bar = progress_mode() == "bar"  # else the recorder prints one line per epoch, or nothing
    callbacks = [
        LightningRecorder(record, epochs),  # before the checkpoints, so a saved epoch is always recorded
        # Fixed names, overwritten, never versioned: also when continuing from checkpoints copied from elsewhere.
        LastPhaseBest(checkpoints, phases[-1].start),
        EpochCheckpoint(checkpoints, filename="last", save_on_train_epoch_end=True, enable_version_counter=False),
        *([ThrottledRichProgressBar()] if bar else []),
        *extra_callbacks,
    ]
    return dict(max_epochs=epochs, accelerator=plan.accelerator, devices=plan.devices, num_nodes=plan.num_nodes,
                precision=plan.precision, sync_batchnorm=settings.sync_batchnorm, logger=_logger(run_dir),
                callbacks=callbacks, num_sanity_val_steps=0, enable_model_summary=True, enable_progress_bar=bar,
                profiler=NoProfiler(), default_root_dir=str(run_dir))


class NoProfiler(PassThroughProfiler):
    """Lightning's default profiler (PassThroughProfiler: it records nothing) without a new generator-based context
    manager at each of the 45 to 75 calls of `profile()` in every training step: one shared null context."""

    def profile(self, action_name: str):
        return _NO_PROFILE


_NO_PROFILE = nullcontext()


def _logger(run_dir: Path) -> TensorBoardLogger:
    return TensorBoardLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False)


def _resume_checkpoint(run_dir: Path) -> str | None:
    path = run_dir / CHECKPOINTS_DIR / LAST_CKPT
    return str(path) if path.exists() else None


def _epochs_done(ckpt: str | None) -> int:
    """Epochs a Lightning checkpoint saved at an epoch's end holds."""
    return 0 if ckpt is None else torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"] + 1


@torch.no_grad()
def predict_logits(module: ImageClassifier, images: np.ndarray, device,
                   batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    module.eval().to(device)
    out = [module(torch.from_numpy(images[i:i + batch_size]).to(device)).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


@contextmanager
def _ctrl_c_as_keyboard_interrupt():
    """Lightning turns Ctrl-C into exit(1) and ignores further Ctrl-C; callers expect a KeyboardInterrupt."""
    try:
        yield
    except SystemExit as e:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt from e
