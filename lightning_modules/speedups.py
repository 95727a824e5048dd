"""Every departure from a stock LightningModule and Trainer made for speed, and `stock()`, which turns them off.

Each changes how long a training step takes, never what it computes: tests/test_speed.py trains with all of
them off and gets the same history. One is kept only where it saves at least 0.05 ms a step, measured by
`python -m bench.step_cost --rounds 5 --per-call-only` (CPU time of the main thread, one thread, median of 5
rounds, on a 2-core machine shared with other jobs, 2026-12-06): saving per call x calls a step of the project's
Trainer (counted in a run).

| departure (what a call is) | stock | with it | calls a step | saved a step |
| --- | ---: | ---: | ---: | ---: |
| `PlainAttributes`: `_current_fx_name` set without `Module.__setattr__` | 1.35 us | 0.16 us | 44 | 0.052 ms |
| `stop_probing_for_gpus`: an Adam step without asking NVML for a GPU | 217.6 us | 100.9 us | 1 | 0.117 ms |
| `log_step`: no `self.log` in `training_step` (a tiny module's whole step) | 824 us | 459 us | 1 | 0.365 ms |

Measured in the same run and dropped, under 0.05 ms a step: a `PassThroughProfiler` that returns one shared null
context (0.037 ms), `ModelCheckpoint`'s state_key computed once (0.015 ms) and its per-step save check skipped
(0.002 ms), batches already on the device passed through `transfer_batch_to_device` (0.013 ms), torchmetrics'
two counters as plain attributes (0.004 ms), and the progress bar redrawn at most every 0.2 s (-0.006 ms, in a
terminal).

The departures made for a fair comparison with Keras stay in every mode, as they change what is computed; each
says why where it is: `TrainBatches` instead of a DataLoader (datamodules/torch_data.py), test scoring outside
`trainer.test` (ArraysDataModule; lab.reports.metrics), `EpochMetrics` (lightning_modules/epoch_metrics.py).
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

_on = True


def enabled() -> bool:
    return _on


@contextmanager
def stock():
    """Every departure of this module off (the objects built meanwhile are stock Lightning's), e.g. to check
    that they change nothing but time."""
    global _on
    saved, _on = _on, False
    try:
        yield
    finally:
        _on = saved


class PlainAttributes:
    """Attributes named in `_plain` are set every step by Lightning and are never parameters, buffers or
    submodules: they skip torch's Module.__setattr__, whose checks cost a few microseconds a call."""

    _plain: tuple[str, ...] = ()

    def __setattr__(self, name: str, value) -> None:
        if name in self._plain and _on:
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)


def stop_probing_for_gpus(gpus: int) -> None:
    """On a machine without a usable NVIDIA GPU, a CUDA build of torch looks for one again at every Adam step:
    Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1, so the optimizer's capture check loads NVML each time. An empty
    CUDA_VISIBLE_DEVICES answers at once; it hides nothing, as there is nothing to hide, and a CUDA_VISIBLE_DEVICES
    already set is left alone."""
    if _on and gpus == 0 and torch.backends.cuda.is_built() and "CUDA_VISIBLE_DEVICES" not in os.environ:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


def log_step(module, loss: torch.Tensor) -> None:
    """Nothing: a value logged in training_step makes Lightning rebuild its metric dictionaries after every step.
    Stock, the step's loss goes to the progress bar as a template LightningModule logs it."""
    if not _on:
        module.log("train/step_loss", loss, prog_bar=True, logger=False)
