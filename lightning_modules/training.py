"""The Lightning backend: one training loop for every run, a plain run being a run of one phase.

A transfer run (lab.specs.phases) trains its phases in the same Trainer, epochs numbered continuously;
callbacks.lightning_finetuning.PhaseFinetuning freezes and unfreezes blocks at the phase boundary.
"""
from __future__ import annotations

import logging
import signal
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from pytorch_lightning.loggers import TensorBoardLogger

from callbacks.lightning_checkpoint import LastPhaseBest, last_checkpoint
from callbacks.lightning_finetuning import PhaseFinetuning
from callbacks.lightning_profile import StepClock
from callbacks.lightning_progress import RunningMetricsBar
from callbacks.lightning_recorder import LightningRecorder
from core.errors import LabError, one_line
from datamodules.base import DataSplits
from datamodules.batching import EVAL_BATCH_SIZE
from datamodules.torch_data import ArraysDataModule
from lab.config.devices import DevicePlan, plan_devices
from lab.progress import progress_mode
from lab.records.checkpoint_files import best_file, checkpoint_file, last_file
from lab.records.recording import RunRecord
from lab.records.rundirs import CHECKPOINTS_DIR, best_checkpoint
from lab.reports.report import save_augmented_grid
from lab.run.backend import Exported, LoadedNetwork, Trained, inference_result, phase_stats, trained
from lab.run.recalibration import recalibrate
from lab.specs.networks import describe
from lab.specs.phases import TransferLog, is_transfer, plan_phases, transfer_details
from lab.specs.weight_sources import resolve_weights
from lightning_modules import speedups
from lightning_modules.batchnorm import tested_norms
from lightning_modules.classifier import ImageClassifier, TransferClassifier
from lightning_modules.compiling import check_compiler, compile_network, warn_cpu_cost
from lightning_modules.components import count_params
from lightning_modules.components.augment import apply_numpy, build_augment
from lightning_modules.components.backbones import TransferParts, transfer_parts, zoo_flops
from lightning_modules.distributed import build_strategy
from lightning_modules.exporting import FORMATS, export_classifier
from lightning_modules.profiling import inference_speed, measure
from lightning_modules.rank_death import RankDeath, one_sentence_on_death
from lightning_modules.weights import load_initial_weights

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings

ADVERT = "Tip: For seamless cloud logging"  # Lightning's suggestion of a paid logger, at every Trainer with ours


class _NoAdvert(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return ADVERT not in record.getMessage()


for _name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_NoAdvert())


class LightningBackend:
    name = "lightning"
    export_formats = FORMATS

    def plan_devices(self, settings: ExperimentSettings) -> DevicePlan:
        gpus = torch.cuda.device_count()
        speedups.stop_probing_for_gpus(gpus)
        plan = plan_devices(settings, gpus)
        if settings.sync_batchnorm and plan.accelerator == "cpu" and plan.world_size > 1:
            raise LabError("--sync-batchnorm needs GPUs on Lightning: PyTorch's SyncBatchNorm runs on CUDA only; "
                           "drop it on the CPU.")
        if settings.compile:
            check_compiler(plan.accelerator)
            if plan.global_rank == 0:
                warn_cpu_cost(plan.accelerator)
        return plan

    def is_writer(self, plan: DevicePlan) -> bool:
        return plan.global_rank == 0

    def train(self, settings: ExperimentSettings, splits: DataSplits, run_dir: Path, plan: DevicePlan,
              resume: bool = False, patience: int | None = None) -> Trained:
        with _ctrl_c_as_keyboard_interrupt():
            return train(settings, splits, run_dir, plan, resume, patience)

    def log_extras(self, run_dir: Path, step: int, images: dict[str, np.ndarray], hparams: dict,
                   metrics: dict[str, float]) -> None:
        logger = _logger(run_dir)
        for tag, array in images.items():
            logger.experiment.add_image(tag, array, step, dataformats="HWC")
        logger.log_hyperparams(hparams, metrics)
        logger.experiment.close()

    def load_network(self, checkpoint: Path, description: Callable[[], dict]) -> LoadedNetwork:
        model = load_classifier(checkpoint, description)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return LoadedNetwork(tuple(model.hparams.network["input_shape"]),
                             lambda images: predict_logits(model, images, device))

    def export(self, checkpoint: Path, fmt: str, path: Path, images: np.ndarray,
               description: Callable[[], dict]) -> Exported:
        return export_classifier(load_classifier(checkpoint, description), fmt, path, images)


BACKEND = LightningBackend()


def build_model(settings: ExperimentSettings, splits: DataSplits, augment=None) -> ImageClassifier:
    """The trainable module of a plain run: the network of the run's spec in an ImageClassifier."""
    return ImageClassifier(describe(settings, splits), settings.optimizer, settings.lr, augment)


def train(settings: ExperimentSettings, splits: DataSplits, run_dir: Path, plan: DevicePlan, resume: bool = False,
          patience: int | None = None, callbacks: tuple = ()) -> Trained:
    """Backend.train; `callbacks` are added to the Trainer's (tests observe training with them)."""
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    ckpt = _resume_checkpoint(run_dir) if resume else None
    writes = plan.global_rank == 0  # the other ranks of a multi-process run write nothing
    record = RunRecord(run_dir, len(splits.train), persist=writes)
    model, parts, log = _model(settings, splits, run_dir, fresh=ckpt is None, persist=writes)
    phases = plan_phases(settings, len(parts.blocks) if parts else 0)
    if parts is not None:
        def phase_end(index: int, trainer: pl.Trainer) -> None:  # the next epoch puts the module back in training
            with trainer.precision_plugin.forward_context():  # in the run's precision, as validation
                logits = predict_logits(model, splits.test.images, trainer.strategy.root_device)
            log.finish_phase(index, phase_stats(count_params(model.net), logits, splits.test.labels))

        callbacks = (PhaseFinetuning(parts, phases, _epochs_done(ckpt), on_phase_end=phase_end), *callbacks)
    if patience is not None:
        callbacks = (*callbacks, EarlyStopping("val/acc", mode="max", patience=patience))
    if settings.save_augmented and writes:
        save_augmented_grid(run_dir, settings, splits, apply_numpy)
    clock = StepClock() if settings.profile and writes else None
    callbacks = (*callbacks, clock) if clock else callbacks
    # ddp_spawn's processes get the Trainer pickled, and end with their launcher
    death = RankDeath(run_dir, plan.global_rank) if plan.world_size > 1 and plan.strategy != "ddp_spawn" else None
    callbacks = (*callbacks, death) if death else callbacks
    trainer = pl.Trainer(**_trainer_args(settings, plan, run_dir, record, phases, callbacks),
                         strategy=build_strategy(plan, transfer=parts is not None))
    with warnings.catch_warnings():
        # A Hyperband continuation starts from its parent's checkpoints, copied from the parent's folder.
        warnings.filterwarnings("ignore", message="The dirpath has changed")
        # The summary's size in MB assumes 32 bits under bf16-mixed; so do the weights, which stay float32.
        warnings.filterwarnings("ignore", message="Precision bf16-mixed is not supported by the model summary")
        data = ArraysDataModule(splits, settings.batch_size, settings.seed)
        with one_sentence_on_death(death, trainer.strategy.launcher):  # a DDP process that dies: RunStopped
            trainer.fit(model, datamodule=data, ckpt_path=ckpt)
    profile = measure(trainer, model, data, clock) if clock else None
    if plan.strategy == "ddp_spawn" and plan.world_size > 1:  # trained in spawned processes: read what rank 0 saved
        record.restore(epochs_done=phases[-1].end)
        if log is not None:
            log.reload()
    device = trainer.strategy.root_device
    # the other ranks' test logits are never used
    tested = best_model(run_dir, model) if settings.test_weights == "best" and writes else model
    context = trainer.precision_plugin.forward_context  # the test set in the run's precision, as Keras predicts

    def test_logits() -> np.ndarray:
        with context():
            return predict_logits(tested, splits.test.images, device)

    norms = tested_norms(tested, checkpoint_file(run_dir, "lightning", settings.test_weights), device, context)
    recalibration = recalibrate(settings, splits, norms, test_logits) if writes else None
    logits = test_logits()
    speed = inference_result(settings.profile and writes, plan, lambda: inference_speed(
        tested, splits.test.images, device, context))
    return trained(logits, splits.test.labels, count_params(model.net), record,
                   plan.describe(torch.cuda.get_device_name(device) if device.type == "cuda" else None),
                   plan.batches(settings.batch_size), settings.test_weights, log, phases, profile,
                   zoo_flops(describe(settings, splits)), speed, recalibration)


def best_model(run_dir: Path, model: ImageClassifier) -> ImageClassifier:
    """`model` with the weights of the run's best checkpoint (callbacks.lightning_checkpoint), loaded in place."""
    path = best_checkpoint(run_dir, best_file("lightning"))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    return model


def load_classifier(checkpoint: Path, description: Callable[[], dict]) -> ImageClassifier:
    """The ImageClassifier of a checkpoint, in eval mode on the CPU: ImageClassifier.load_from_checkpoint, or for a
    checkpoint written before the network was among its hyperparameters, the network `description()` gives."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "network" in saved.get("hyper_parameters", {}):
        return ImageClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    hparams = saved.get("hyper_parameters", {})
    model = ImageClassifier(description(), hparams.get("optimizer", "adam"), hparams.get("lr", 1e-3))
    model.on_load_checkpoint(saved)
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as e:  # a network whose layers have changed since
        raise LabError(f"{checkpoint} does not fit the network its run's settings describe now "
                       f"({one_line(e, limit=200)}); it was written by an older version of this project.") from None
    return model.eval()


def _model(settings: ExperimentSettings, splits: DataSplits, run_dir: Path, fresh: bool,
           persist: bool) -> tuple[ImageClassifier, TransferParts | None, TransferLog | None]:
    """The LightningModule (its network compiled with --compile) and, for a transfer run, its blocks and phase
    log; a fresh transfer run loads its initial weights (a resumed one continues from its checkpoint instead)."""
    model, parts, log = _eager_model(settings, splits, run_dir, fresh, persist)
    if settings.compile:
        compile_network(model.net)
    return model, parts, log


def _eager_model(settings: ExperimentSettings, splits: DataSplits, run_dir: Path, fresh: bool,
                 persist: bool) -> tuple[ImageClassifier, TransferParts | None, TransferLog | None]:
    if not is_transfer(settings):
        return build_model(settings, splits, build_augment(settings)), None, None
    source = resolve_weights(settings.weights, "lightning", settings.model)
    description = describe(settings, splits)
    model = TransferClassifier(description, settings.optimizer, settings.lr, build_augment(settings))
    parts, log = transfer_parts(model.net, description), TransferLog(run_dir, persist)
    if fresh:
        head = load_initial_weights(parts, source, splits.class_names)
        log.set_details(transfer_details(settings, source, parts.zoo_name or settings.model, len(parts.blocks), head))
    return model, parts, log


def _trainer_args(settings: ExperimentSettings, plan: DevicePlan, run_dir: Path, record: RunRecord, phases: list,
                  extra_callbacks: tuple) -> dict:
    checkpoints, epochs = run_dir / CHECKPOINTS_DIR, phases[-1].end
    bar = progress_mode() == "bar"  # else the recorder prints one line per epoch, or nothing
    callbacks = [
        LightningRecorder(record, epochs),  # before the checkpoints, so a saved epoch is always recorded
        LastPhaseBest(checkpoints, phases[-1].start),
        last_checkpoint(checkpoints),
        *([RunningMetricsBar()] if bar else []),
        *extra_callbacks,
    ]
    return dict(max_epochs=epochs, accelerator=plan.accelerator, devices=plan.devices, num_nodes=plan.num_nodes,
                precision=plan.precision, sync_batchnorm=settings.sync_batchnorm, logger=_logger(run_dir),
                callbacks=callbacks, num_sanity_val_steps=0, enable_model_summary=True, enable_progress_bar=bar,
                default_root_dir=str(run_dir))


def _logger(run_dir: Path) -> TensorBoardLogger:
    return TensorBoardLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False)


def _resume_checkpoint(run_dir: Path) -> str | None:
    path = run_dir / CHECKPOINTS_DIR / last_file("lightning")
    return str(path) if path.exists() else None


def _epochs_done(ckpt: str | None) -> int:
    """Epochs a Lightning checkpoint saved at an epoch's end holds."""
    return 0 if ckpt is None else torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"] + 1


@torch.no_grad()
def predict_logits(model: ImageClassifier, images: np.ndarray, device,
                   batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    model.eval().to(device)
    out = [model(torch.from_numpy(images[i:i + batch_size]).to(device)).float().cpu()
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
