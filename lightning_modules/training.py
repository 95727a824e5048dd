"""Train and test one experiment with a Lightning Trainer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from callbacks.lightning_progress import ThrottledRichProgressBar
from callbacks.lightning_recorder import LightningRecorder
from datamodules.base import DataSplits
from datamodules.torch_data import ArraysDataModule
from lab.augmentation import save_augmented_grid
from lab.devices import DevicePlan, plan_devices
from lab.models import model_spec
from lab.outcome import Outcome
from lab.recording import RunRecord
from lab.transfer import is_transfer
from lightning_modules.classifier import ImageClassifier
from lightning_modules.components import build_network, count_params
from lightning_modules.components.augment import apply_numpy, build_augment

LAST_CKPT = "last.ckpt"


def build_module(settings, splits: DataSplits, augment=None) -> ImageClassifier:
    spec = model_spec(settings, splits.input_shape, splits.num_classes)
    net = build_network(spec, splits.input_shape, splits.mean, splits.std)
    return ImageClassifier(net, splits.num_classes, settings.optimizer, settings.lr, augment)


def train(settings, splits: DataSplits, run_dir: Path, resume: bool, plan: DevicePlan,
          extra_callbacks: tuple = ()) -> Outcome:
    if is_transfer(settings):  # two phases, weights to load: lightning_modules/transfer.py
        from lightning_modules import transfer

        return transfer.train(settings, splits, run_dir, resume, plan, extra_callbacks)
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    module = build_module(settings, splits, build_augment(settings))
    if settings.save_augmented:
        save_augmented_grid(run_dir, settings, splits, apply_numpy)
    record = RunRecord(run_dir, len(splits.train))
    logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False)
    trainer = pl.Trainer(**_trainer_args(settings, plan, run_dir, record, logger, extra_callbacks))
    ckpt = _resume_checkpoint(run_dir) if resume else None
    trainer.fit(module, datamodule=ArraysDataModule(splits, settings.batch_size, settings.seed), ckpt_path=ckpt)
    return outcome(predict_logits(module, splits.test.images, trainer.strategy.root_device), module, record, plan,
                   logger)


def outcome(test_logits: np.ndarray, module: ImageClassifier, record: RunRecord, plan: DevicePlan,
            logger: TensorBoardLogger, extra: dict | None = None) -> Outcome:
    return Outcome(test_logits=test_logits, params=count_params(module.net), record=record, device=_describe(plan),
                   log_images=lambda images: _log_images(logger, images, len(record.history)),
                   log_hparams=lambda hparams, metrics: _log_hparams(logger, hparams, metrics), extra=extra)


def _trainer_args(settings, plan: DevicePlan, run_dir: Path, record: RunRecord, logger,
                  extra_callbacks: tuple = ()) -> dict:
    checkpoints = run_dir / "checkpoints"
    callbacks = [
        LightningRecorder(record),  # before the checkpoints, so a saved epoch is always recorded
        # Fixed names, overwritten, never versioned: also when continuing from checkpoints copied from elsewhere.
        ModelCheckpoint(checkpoints, filename="best", monitor="val/acc", mode="max", save_on_train_epoch_end=True,
                        enable_version_counter=False),
        ModelCheckpoint(checkpoints, filename="last", save_on_train_epoch_end=True, enable_version_counter=False),
        ThrottledRichProgressBar(),
        *extra_callbacks,
    ]
    return dict(max_epochs=settings.epochs, accelerator=plan.accelerator, devices=plan.devices,
                precision=plan.precision, logger=logger, callbacks=callbacks, num_sanity_val_steps=0,
                enable_model_summary=True, default_root_dir=str(run_dir))


def _resume_checkpoint(run_dir: Path) -> str | None:
    path = run_dir / "checkpoints" / LAST_CKPT
    return str(path) if path.exists() else None


@torch.no_grad()
def predict_logits(module: ImageClassifier, images: np.ndarray, device, batch_size: int = 1024) -> np.ndarray:
    module.eval().to(device)
    out = [module(torch.from_numpy(images[i:i + batch_size]).to(device)).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def _log_images(logger: TensorBoardLogger, images: dict[str, np.ndarray], step: int) -> None:
    for tag, array in images.items():
        logger.experiment.add_image(tag, array, step, dataformats="HWC")
    logger.experiment.flush()


def _log_hparams(logger: TensorBoardLogger, hparams: dict, metrics: dict) -> None:
    logger.log_hyperparams(_flat(hparams), metrics)
    logger.experiment.flush()  # now, not at exit: a search process trains many runs


def _flat(hparams: dict) -> dict:
    return {k: ("none" if v is None else v) for k, v in hparams.items()}


def _describe(plan: DevicePlan) -> str:
    if plan.accelerator == "cpu":
        return "cpu"
    return f"gpu x{plan.num_gpus} ({torch.cuda.get_device_name(plan.devices[0])})"


def configure_devices(settings) -> DevicePlan:
    return plan_devices(settings, torch.cuda.device_count())
