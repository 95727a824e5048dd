"""The LightningModule: a network returning logits, cross-entropy on those logits (softmax once,
inside the loss), the epoch's mean loss and (micro-averaged) accuracy in a torchmetrics Metric."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torchmetrics import Metric

from datamodules.torch_data import Part
from lightning_modules.compiling import eager_keys


class PlainAttributes:
    """Attributes named in `_plain` are set every step by Lightning or torchmetrics and are never parameters,
    buffers or submodules: they skip torch's Module.__setattr__, whose checks cost a few microseconds a call."""

    _plain: tuple[str, ...] = ()

    def __setattr__(self, name: str, value) -> None:
        if name in self._plain:
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)


class ImageClassifier(PlainAttributes, pl.LightningModule):
    _plain = ("_current_fx_name",)  # Lightning sets it before and after every hook it calls, some 50 times a step

    def __init__(self, net: nn.Module, num_classes: int, optimizer: str = "adam", lr: float = 1e-3,
                 augment: nn.Module | None = None):
        """augment(uint8 images, global batch index, Part) -> augmented uint8 images, on training batches only."""
        super().__init__()
        self.save_hyperparameters(ignore=["net", "augment"])
        self.net = net
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
        # A metric update only, no self.log: a value logged here makes Lightning rebuild its metric dictionaries
        # after every step of the epoch. The progress bar reads the running epoch means (running_metrics) instead.
        self.train_metrics.update(loss.detach(), logits.detach(), labels)
        # Scaled by the replica's share of the global batch: DDP's mean of the gradients is then the global one.
        return loss if part.loss_scale == 1 else loss * part.loss_scale

    def running_metrics(self) -> dict[str, float]:
        """This process's training loss and accuracy so far in the epoch, as Keras' progress bar shows them."""
        if not int(self.train_metrics.count):
            return {}
        loss, acc = self.train_metrics.compute_local()
        return {"loss": float(loss), "acc": float(acc)}

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

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Written by a network wrapped as torch.compile(net): its keys hold `_orig_mod.`; this module's never do.
        checkpoint["state_dict"] = eager_keys(checkpoint["state_dict"])

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.hparams.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.hparams.lr, momentum=0.9)
        # Keras' Adam epsilon, so both backends take the same steps.
        return torch.optim.Adam(params, lr=self.hparams.lr, eps=1e-7)


class EpochMetrics(PlainAttributes, Metric):
    """The mean loss, weighted by the batches' sizes as Keras weights it, and the micro-averaged accuracy (Keras'
    "accuracy") of an epoch: three sums kept on the device, a few tensor operations a step, summed over the
    processes once, in compute(). A NaN loss stays NaN in the mean, as in Keras.

    Not torchmetrics' MeanMetric and MulticlassAccuracy: MeanMetric(nan_strategy="disable"), which skips a
    synchronising NaN check every step, drops the weights (Lightning-AI/torchmetrics#3434), and the two updates
    cost a small network 0.3-0.5 ms a step on a CPU."""

    full_state_update = False
    _plain = ("_computed", "_update_count")  # set by torchmetrics' update wrapper at every update

    def __init__(self):
        super().__init__()
        self.add_state("loss_sum", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        # in place: `self.x += ...` would go through Metric's and Module's __setattr__, three times a step
        self.loss_sum.add_(loss * len(labels))
        self.correct.add_((logits.argmax(1) == labels).sum())
        self.count.add_(len(labels))

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.compute_local()

    def compute_local(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The means of this process's sums (compute() gives those of the sums over every process)."""
        return self.loss_sum / self.count, self.correct / self.count


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
