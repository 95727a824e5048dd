"""The LightningModule: a network returning logits, cross-entropy on those logits (softmax once,
inside the loss), micro-averaged accuracy from torchmetrics."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from datamodules.torch_data import Part
from lightning_modules.compiling import eager_keys

BAR_EVERY = 25  # steps between progress-bar loss updates


class ImageClassifier(pl.LightningModule):
    def __init__(self, net: nn.Module, num_classes: int, optimizer: str = "adam", lr: float = 1e-3,
                 augment: nn.Module | None = None):
        """augment(uint8 images, global batch index, Part) -> augmented uint8 images, on training batches only."""
        super().__init__()
        self.save_hyperparameters(ignore=["net", "augment"])
        self.net = net
        self.augment = augment
        # Keras' "accuracy" is micro-averaged; torchmetrics defaults to macro. The inputs are the module's own
        # logits and labels, so torchmetrics' per-update checks (a large share of a small model's CPU step)
        # are off; a NaN loss stays NaN in the mean, as in Keras, instead of being dropped with a warning.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.train_loss, self.val_loss = MeanMetric(nan_strategy="disable"), MeanMetric(nan_strategy="disable")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch, batch_idx):
        images, labels, *rest = batch
        part = rest[0] if rest else Part(0, len(labels))  # where this replica's images sit in the global batch
        if self.augment is not None:
            images = self.augment(images, self.global_step, part)
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        # Metric updates only: a self.log per step costs more than this small network's step.
        self.train_loss.update(loss.detach(), len(labels))
        self.train_acc.update(logits.detach(), labels)
        if batch_idx % BAR_EVERY == 0:
            self.log("loss", loss.detach(), prog_bar=True, logger=False)
        # Scaled by the replica's share of the global batch: DDP's mean of the gradients is then the global one.
        return loss if part.loss_scale == 1 else loss * part.loss_scale

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        self.val_loss.update(F.cross_entropy(logits, labels), len(labels))
        self.val_acc.update(logits, labels)

    def on_validation_epoch_end(self):
        # Validation closes each training epoch, so the training metrics cover the whole epoch here;
        # logging them now lets every callback read both at on_train_epoch_end.
        if self.trainer.sanity_checking:
            return
        for name, metric in (("train/loss", self.train_loss), ("train/acc", self.train_acc),
                             ("val/loss", self.val_loss), ("val/acc", self.val_acc)):
            self.log(name, metric.compute(), prog_bar=True, logger=False, sync_dist=True)
            metric.reset()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Written by a network wrapped as torch.compile(net): its keys hold `_orig_mod.`; this module's never do.
        checkpoint["state_dict"] = eager_keys(checkpoint["state_dict"])

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.hparams.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.hparams.lr, momentum=0.9)
        # Keras' Adam epsilon, so both backends take the same steps.
        return torch.optim.Adam(params, lr=self.hparams.lr, eps=1e-7)


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
