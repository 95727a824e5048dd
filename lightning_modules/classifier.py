"""The LightningModule: a network returning logits, cross-entropy on those logits (softmax once, inside the loss),
the epoch's mean loss and micro-averaged accuracy in lightning_modules.epoch_metrics.EpochMetrics.

Its network comes as a plain description (lab.specs.networks.describe), saved with its hyperparameters, so
`ImageClassifier.load_from_checkpoint(path)` rebuilds it; a network object is accepted too (tests, benchmarks).
What departs from a stock LightningModule for speed is in lightning_modules.speedups."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from datamodules.torch_data import Part
from lab.specs.optimizer import OptimizerSpec
from lightning_modules import speedups
from lightning_modules.compiling import build_optimizer, eager_keys
from lightning_modules.components.backbones import build_described
from lightning_modules.epoch_metrics import EpochMetrics


class ImageClassifier(speedups.PlainAttributes, pl.LightningModule):
    _plain = ("_current_fx_name",)  # Lightning sets it before and after every hook it calls, some 50 times a step

    def __init__(self, network: dict | nn.Module, optimizer: str = "adam", lr: float = 1e-3,
                 augment: nn.Module | None = None):
        """network: lab.specs.networks.describe's description, or a torch network. augment(uint8 images, global
        batch index, Part) -> augmented uint8 images, on training batches only."""
        super().__init__()
        self.save_hyperparameters(ignore=["augment", *(["network"] if isinstance(network, nn.Module) else [])])
        self.net = network if isinstance(network, nn.Module) else build_described(network)
        if isinstance(network, dict):  # one image, for the FLOPs of Lightning's model summary
            self.example_input_array = torch.zeros((1, *network["input_shape"]), dtype=torch.uint8)
        self.augment = augment
        self.train_metrics, self.val_metrics = EpochMetrics(), EpochMetrics()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch, batch_idx):
        images, labels, *rest = batch
        part = rest[0] if rest else Part(0, len(labels))  # where this replica's images sit in the global batch
        if self.augment is not None:
            images = self.augment(images, self.global_step, part)
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        self.train_metrics.update(loss.detach(), logits.detach(), labels)
        speedups.log_step(self, loss.detach())
        # Scaled by the replica's share of the global batch: DDP's mean of the gradients is then the global one.
        return loss if part.loss_scale == 1 else loss * part.loss_scale

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        self.val_metrics.update(F.cross_entropy(logits, labels), logits, labels)

    def on_validation_epoch_end(self):
        # Validation closes each training epoch, so the training metrics cover the whole epoch here;
        # logging them now lets every callback read both at on_train_epoch_end.
        if self.trainer.sanity_checking:
            return
        for split, metric in (("train", self.train_metrics), ("val", self.val_metrics)):
            loss, acc = metric.compute()
            self.log(f"{split}/loss", loss, prog_bar=True, logger=False, sync_dist=True)
            self.log(f"{split}/acc", acc, prog_bar=True, logger=False, sync_dist=True)
            metric.reset()

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        return build_optimizer(OptimizerSpec.of(self.hparams.optimizer, self.hparams.lr), params)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Written by a network wrapped as torch.compile(net): its keys hold `_orig_mod.`; this module's never do.
        checkpoint["state_dict"] = eager_keys(checkpoint["state_dict"])

    def running_metrics(self) -> dict[str, float]:
        """This process's training loss and accuracy so far in the epoch, as Keras' progress bar shows them."""
        if not int(self.train_metrics.count):
            return {}
        loss, acc = self.train_metrics.compute_local()
        return {"loss": float(loss), "acc": float(acc)}


class TransferClassifier(ImageClassifier):
    """An ImageClassifier whose frozen BatchNorm layers stay in inference mode, as Keras runs them."""

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.modules():
            if isinstance(module, _BatchNorm) and module.weight is not None and not module.weight.requires_grad:
                module.eval()
        return self

    def on_train_epoch_start(self) -> None:
        # Lightning never calls train(): it only restores the modes it found before each validation. This
        # hook runs after the callbacks', so after PhaseFinetuning has set this epoch's trainable layers.
        self.train()
