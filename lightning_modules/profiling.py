"""The Lightning calls of the per-step profile (lab.records.profile): a bare step on a copy of the network and
its optimizer, and the training batches alone (with the module's augmentation, which runs in the step here
and in the pipeline on Keras); and the call of the inference speed (lab.records.inference_timing): the network in
eval mode under torch.inference_mode."""
from __future__ import annotations

import copy
from contextlib import nullcontext

import numpy as np
import pytorch_lightning as pl
import torch
from torch.nn import functional as F

from callbacks.lightning_profile import StepClock
from callbacks.lightning_recorder import synchronize
from datamodules.torch_data import ArraysDataModule
from lab.records import inference_timing
from lab.records.profile import breakdown, next_batch, no_sync
from lightning_modules.classifier import ImageClassifier
from lightning_modules.compiling import compile_network, is_compiled


def measure(trainer: pl.Trainer, module: ImageClassifier, data: ArraysDataModule, clock: StepClock) -> dict | None:
    """The profile of the run `trainer` trained; the module, its optimizer and every random state unchanged."""
    if clock.window.step_ms is None:
        return None
    cuda = trainer.strategy.root_device.type == "cuda"
    states = torch.get_rng_state(), torch.cuda.get_rng_state_all() if cuda else None
    try:
        images, labels, _ = next(iter(data.train_dataloader()))
        return breakdown(clock.window, _bare_step(trainer, module, images, labels), lambda: _batches(module, data),
                         lambda: synchronize(trainer))
    finally:
        torch.set_rng_state(states[0])
        if cuda:
            torch.cuda.set_rng_state_all(states[1])


def inference_speed(module: ImageClassifier, images: np.ndarray, device: torch.device, context=nullcontext,
                    **timing) -> dict:
    """How fast the module's network infers on `device`, in eval mode under torch.inference_mode and context() (the
    run's precision); images: uint8 N x H x W x C, the test split; timing: lab.records.inference_timing.measure's
    arguments."""
    net = module.eval().to(device).net
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else no_sync
    with torch.inference_mode(), context():
        return inference_timing.measure(lambda batch: net(torch.from_numpy(batch).to(device)), images, sync,
                                        **timing)


def _batches(module: ImageClassifier, data: ArraysDataModule):
    """A call that serves the next training batch, augmented where the run augments."""
    fetch = next_batch(data.train_dataloader)

    def batch():
        images, labels, part = fetch()
        return module.augment(images, 0, part) if module.augment is not None else images

    return batch


def _bare_step(trainer: pl.Trainer, module: ImageClassifier, images: torch.Tensor, labels: torch.Tensor):
    """Forward, loss, backward and optimizer step of a copy, in the run's precision, outside Lightning's loop."""
    was_training = module.training
    module.train()  # as in the loop (a transfer run's module keeps its frozen BatchNorm in inference)
    net, optimizer = _copies(module.net, trainer.optimizers[0])
    module.train(was_training)
    context = trainer.precision_plugin.forward_context

    def step():
        with context():
            loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def _copies(net: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """Copies of the network in training mode (compiled again if it was) and of its optimizer, state included."""
    twin = copy.deepcopy(net)  # a deep copy runs eagerly
    if is_compiled(net):
        compile_network(twin)
    to_twin = {id(p): q for p, q in zip(net.parameters(), twin.parameters())}
    groups = [{**{k: v for k, v in group.items() if k != "params"}, "params": [to_twin[id(p)] for p in group["params"]]}
              for group in optimizer.param_groups]
    twin_optimizer = type(optimizer)(groups)
    # deep: load_state_dict keeps the very tensors it is given where their device and dtype fit, and the twin's
    # steps would then move the run's Adam moments and step counts
    twin_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    return twin, twin_optimizer
