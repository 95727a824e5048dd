"""The Trainer's strategy for a run on several processes: Lightning's own DDP, with two settings of ours.

- A transfer run freezes blocks before the model is wrapped and unfreezes them later. DDP only reduces the
  gradients of parameters that required them when it wrapped the model, so blocks unfrozen later would
  train apart on each rank (Lightning-AI/pytorch-lightning#20340). Here every parameter is registered with
  DDP, and find_unused_parameters lets the frozen ones sit out until their phase.
- The process group's timeout comes from LAB_DDP_TIMEOUT_S when set (tests set it short, so that a rank
  left waiting fails instead of hanging); torch's default (30 minutes) otherwise.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
from pytorch_lightning.strategies import DDPStrategy
from torch import nn

from lab.config.devices import DevicePlan

TIMEOUT_VARIABLE = "LAB_DDP_TIMEOUT_S"
START_METHODS = {"auto": "popen", "ddp": "popen", "ddp_spawn": "spawn"}


class LabDDP(DDPStrategy):
    """DDPStrategy whose convolution weights are channels-last, as the networks compute (their input is NHWC): DDP's
    gradient buckets follow the weights' layout, and would otherwise copy every convolution's gradient (PyTorch
    warns "Grad strides do not match bucket view strides")."""

    def _setup_model(self, model: nn.Module):
        return super()._setup_model(model.to(memory_format=torch.channels_last))


class AllParametersDDP(LabDDP):
    """LabDDP that wraps the model with every parameter registered, frozen ones included."""

    def _setup_model(self, model: nn.Module):
        frozen = [p for p in model.parameters() if not p.requires_grad]
        for p in frozen:
            p.requires_grad_(True)
        try:
            return super()._setup_model(model)
        finally:
            for p in frozen:
                p.requires_grad_(False)


def build_strategy(plan: DevicePlan, transfer: bool):
    """The Trainer's `strategy` argument."""
    if plan.world_size == 1:
        return "auto"
    kwargs = {"start_method": START_METHODS[plan.strategy]}
    if os.environ.get(TIMEOUT_VARIABLE):
        kwargs["timeout"] = timedelta(seconds=float(os.environ[TIMEOUT_VARIABLE]))
    if transfer:
        return AllParametersDDP(find_unused_parameters=True, **kwargs)
    return LabDDP(**kwargs)
