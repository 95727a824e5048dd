"""What the ONNX files of both backends share: opset 18, a uint8 N x H x W x C input `images` with a symbolic batch
axis `batch`, an output `logits`; running one in onnxruntime, and reading those facts back from a file.

It imports neither torch nor TensorFlow (onnx and onnxruntime only, on first use)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

ONNX_OPSET = 18  # torch 2.14 defaults to 20, tf2onnx maps up to 18: the same on both
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
BATCH = 256  # images per onnxruntime call


def name_io(path: Path) -> None:
    """Name a one-input, one-output ONNX file's output `logits` and both batch axes `batch`, rewriting it in place
    (tf2onnx names them after the traced function: Identity:0, unk__N). Only names change, no node."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    (source,), (target,) = graph.input, graph.output
    for node in graph.node:
        node.output[:] = [OUTPUT_NAME if name == target.name else name for name in node.output]
        node.input[:] = [OUTPUT_NAME if name == target.name else name for name in node.input]
    target.name = OUTPUT_NAME
    for value in (source, target):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def session(path: Path, threads: int | None = None):
    """An onnxruntime session on the CPU (intra-op `threads`, onnxruntime's default when None)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(path: Path, images: np.ndarray) -> np.ndarray:
    """The file's logits for uint8 images, BATCH at a time."""
    runner = session(path)
    return np.concatenate([runner.run([OUTPUT_NAME], {INPUT_NAME: images[i:i + BATCH]})[0]
                           for i in range(0, len(images), BATCH)])


def describe(path: Path) -> dict:
    """The opset, input and output of an ONNX file, read from it."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opset = next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
    return {"opset": opset, "input": _value(model.graph.input[0]), "output": _value(model.graph.output[0])}


def _value(value) -> dict:
    import onnx

    kind = value.type.tensor_type
    shape = [dim.dim_param or dim.dim_value for dim in kind.shape.dim]
    return {"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(kind.elem_type).name, "shape": shape}
