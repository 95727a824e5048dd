"""Lightning's exports of a checkpoint: ONNX through `torch.onnx.export` (the dynamo exporter, onnxscript) and a
`torch.export` program saved as .pt2, each taking uint8 N x H x W x C `images` with a dynamic batch and run back
in its own runtime (onnxruntime, torch.export.load) for the parity check of lab.export.

The network is exported in eval mode, set here: a graph captured by torch.export keeps the BatchNorm and Dropout
mode it was captured in, and Lightning's own to_onnx does not call eval(). The example batch has 2 images, as one
can bake a fixed batch size into the graph. The weights are float32 under every precision Lightning trains in, and
the network runs without autocast here, so a mixed-precision run is exported in float32.
"""
from __future__ import annotations

import warnings
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from datamodules.batching import EVAL_BATCH_SIZE
from lab.export.onnx_file import INPUT_NAME, ONNX_OPSET, OUTPUT_NAME, run_onnx
from lab.run.backend import Exported

FORMATS = ("onnx", "pt2")
PACKAGES = ("torch", "pytorch-lightning", "onnx", "onnxscript", "onnxruntime")
EXAMPLE_BATCH = 2


def export_classifier(model: pl.LightningModule, fmt: str, path: Path, images: np.ndarray) -> Exported:
    """Export the network of a loaded ImageClassifier to `path` in `fmt`; the network's logits on `images` and the
    exported file's, run in its own runtime."""
    export_network(model.net, fmt, path, tuple(model.hparams.network["input_shape"]))
    details = {"opset": ONNX_OPSET if fmt == "onnx" else None,
               "versions": {p: metadata.version(p) for p in PACKAGES}}
    return Exported(_batched(model.net, images), RUNTIMES[fmt](path, images), details)


def export_network(net: nn.Module, fmt: str, path: Path, input_shape: tuple[int, int, int]) -> None:
    """Write `net` (uint8 N x H x W x C -> logits), switched to eval mode, to `path` as ONNX or .pt2."""
    net = net.eval().cpu()
    example = (torch.zeros((EXAMPLE_BATCH, *input_shape), dtype=torch.uint8),)
    dynamic = ({0: torch.export.Dim("batch")},)
    with torch.no_grad():
        if fmt == "pt2":
            torch.export.save(torch.export.export(net, example, dynamic_shapes=dynamic), str(path))
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on its own translation, nothing to act on
            torch.onnx.export(net, example, str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=ONNX_OPSET, dynamo=True, dynamic_shapes=dynamic, external_data=False,
                              verbose=False)


@torch.no_grad()
def _batched(network: Callable[[torch.Tensor], torch.Tensor], images: np.ndarray) -> np.ndarray:
    return torch.cat([network(torch.from_numpy(images[i:i + EVAL_BATCH_SIZE])).float()
                      for i in range(0, len(images), EVAL_BATCH_SIZE)]).numpy()


def _pt2_logits(path: Path, images: np.ndarray) -> np.ndarray:
    return _batched(torch.export.load(str(path)).module(), images)


RUNTIMES = {"onnx": run_onnx, "pt2": _pt2_logits}
