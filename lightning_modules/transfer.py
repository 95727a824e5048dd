"""A Lightning transfer run (lab.transfer): one Trainer over both phases, epochs numbered continuously,
the phase boundary handled by lightning_modules.finetuning.PhaseFinetuning."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from datamodules.base import DataSplits
from datamodules.torch_data import ArraysDataModule
from lab.augmentation import save_augmented_grid
from lab.backbones import image_size, is_backbone
from lab.devices import DevicePlan
from lab.metrics import accuracy
from lab.outcome import Outcome
from lab.recording import RunRecord
from lab.transfer import PhaseStats, TransferLog, plan_phases
from lab.weights import resolve_weights
from lightning_modules.components import count_params
from lightning_modules.components.augment import apply_numpy, build_augment
from lightning_modules.components.backbones import TransferNet, build_transfer_net
from lightning_modules.finetuning import PhaseFinetuning, TransferClassifier
from lightning_modules.training import _resume_checkpoint, _trainer_args, outcome, predict_logits
from lightning_modules.weights import load_initial_weights


def train(settings, splits: DataSplits, run_dir: Path, resume: bool, plan: DevicePlan,
          extra_callbacks: tuple = ()) -> Outcome:
    pl.seed_everything(settings.seed, workers=True, verbose=False)
    source = resolve_weights(settings.weights, "lightning", settings.model)
    tnet = build_transfer_net(settings, splits)
    ckpt = _resume_checkpoint(run_dir) if resume else None
    log = TransferLog(run_dir)
    if ckpt is None:  # a resumed run continues from its checkpoint instead
        log.set_details(_details(settings, source, tnet, load_initial_weights(tnet, source, splits.class_names)))
    module = TransferClassifier(tnet.net, splits.num_classes, settings.optimizer, settings.lr, build_augment(settings))
    if settings.save_augmented:
        save_augmented_grid(run_dir, settings, splits, apply_numpy)
    phases = plan_phases(settings, len(tnet.blocks))
    record = RunRecord(run_dir, len(splits.train))
    logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False)

    def phase_end(index: int) -> None:  # the next epoch's start puts the module back in training mode
        log.finish_phase(index, _test(module, tnet, splits, trainer.strategy.root_device)[0])

    finetuning = PhaseFinetuning(tnet, phases, _epochs_done(ckpt), on_phase_end=phase_end)
    args = _trainer_args(settings, plan, run_dir, record, logger, (finetuning, *extra_callbacks))
    trainer = pl.Trainer(**{**args, "max_epochs": phases[-1].end})
    trainer.fit(module, datamodule=ArraysDataModule(splits, settings.batch_size, settings.seed), ckpt_path=ckpt)
    stats, logits = _test(module, tnet, splits, trainer.strategy.root_device)
    log.finish_phase(len(phases) - 1, stats)
    return outcome(logits, module, record, plan, logger, log.summary(phases, record.history))


def _details(settings, source, tnet: TransferNet, head: str) -> dict:
    zoo = {"image_size": image_size(settings)} if is_backbone(settings.model) else {}
    return {"weights": source.describe(), "backbone": tnet.zoo_name or settings.model, "blocks": len(tnet.blocks),
            "head": head, **zoo}


def _test(module, tnet: TransferNet, splits: DataSplits, device) -> tuple[PhaseStats, np.ndarray]:
    """The phase's parameter counts and test accuracy, and the test logits."""
    logits = predict_logits(module, splits.test.images, device)
    count = count_params(tnet.net)
    return PhaseStats(count.trainable, count.non_trainable, accuracy(logits, splits.test.labels)), logits


def _epochs_done(ckpt: str | None) -> int:
    """Epochs a Lightning checkpoint saved at an epoch's end holds."""
    return 0 if ckpt is None else torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"] + 1
