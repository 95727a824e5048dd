"""The LightningModule: a network returning logits, cross-entropy on those logits (softmax once,
inside the loss), micro-averaged accuracy from torchmetrics."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy


class ImageClassifier(pl.LightningModule):
    def __init__(self, net: nn.Module, num_classes: int, optimizer: str = "adam", lr: float = 1e-3,
                 augment: nn.Module | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["net", "augment"])
        self.net = net
        self.augment = augment
        # Keras' "accuracy" is micro-averaged; torchmetrics defaults to macro.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        if self.augment is not None:
            images = self.augment(images)
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        self.train_acc(logits, labels)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, logger=False)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True, logger=False)
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        self.val_acc(logits, labels)
        self.log("val/loss", F.cross_entropy(logits, labels), prog_bar=True, logger=False, sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True, logger=False)

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.hparams.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.hparams.lr, momentum=0.9)
        # Keras' Adam epsilon, so both backends take the same steps.
        return torch.optim.Adam(params, lr=self.hparams.lr, eps=1e-7)
