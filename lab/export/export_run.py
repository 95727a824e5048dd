"""export.py's work: one checkpoint of a finished run written in a deployable format by its backend
(Backend.export), checked against the framework's own network on the same images, and published with export.json
beside it as one folder, RUN_DIR/exported/<format>/ unless told otherwise.

The parity images are the run's first PARITY_IMAGES test images when its dataset loads, else seeded uint8 images;
the export fails (exit 1) when a top-1 class differs or a logit differs by more than TOLERANCE. Bad input is
refused (exit 2) before anything is written; the folder appears only once complete (a temporary folder renamed).
"""
from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from core import frameworks
from core.errors import LabError, one_line
from core.io import write_json_atomic
from lab.config.data import load_data
from lab.config.settings import make_settings
from lab.export import onnx_file
from lab.predict.classify import find_checkpoint, old_description
from lab.records.checkpoint_files import LAST
from lab.records.results import load_results
from lab.records.rundirs import load_settings
from lab.run.backend import Backend, Exported, get_backend

FORMATS = ("onnx", "pt2", "saved_model", "litert")
FILES = {"onnx": "model.onnx", "pt2": "model.pt2", "saved_model": "saved_model", "litert": "model.tflite"}
EXPORTED_DIR = "exported"
EXPORT_JSON = "export.json"
TOLERANCE = 1e-4  # largest absolute logit difference allowed, float32
PARITY_IMAGES = 1000
SEED = 0
RUNTIMES = {"onnx": "onnxruntime", "pt2": "torch.export.load", "saved_model": "tf.saved_model.load (serve)",
            "litert": "ai_edge_litert.interpreter.Interpreter"}


class ExportFailed(LabError):
    """The exporter failed, or the exported file disagrees with the network: one sentence, exit code 1."""

    exit_code = 1


@dataclass(frozen=True)
class Request:
    run_dir: Path
    fmt: str
    checkpoint: str | None = None  # best or last; None: the weights the run's test used
    out: Path | None = None  # the folder to write; None: RUN_DIR/exported/<fmt>
    overwrite: bool = False


def export_run(request: Request) -> Path:
    """Export, check and publish; the folder written."""
    run_dir = request.run_dir
    results = load_results(run_dir)
    if request.fmt not in FORMATS:
        raise LabError(f"--format must be one of {', '.join(FORMATS)}, got {request.fmt!r}.")
    which = request.checkpoint or results["test"].get("weights", LAST)
    checkpoint = find_checkpoint(run_dir, results["backend"], which)
    out = output_folder(request)
    backend = _backend(results["backend"], request.fmt)
    description = old_description(run_dir, checkpoint, None)
    images, source = parity_images(run_dir, backend, checkpoint)
    with staging(out, request.overwrite) as folder:
        path = folder / FILES[request.fmt]
        exported = _export(backend, checkpoint, request.fmt, path, images, description)
        record = export_record(request.fmt, results, (which, checkpoint), exported,
                               {**source, "shape": images.shape[1:]}, path)
        write_json_atomic(folder / EXPORT_JSON, record)
        check_parity(record["parity"])
    return out


def output_folder(request: Request) -> Path:
    """--out, or RUN_DIR/exported/<format>; refused when it exists (without --overwrite) or cannot be a folder."""
    out = Path(request.out) if request.out else request.run_dir / EXPORTED_DIR / request.fmt
    if out.exists() and not out.is_dir():
        raise LabError(f"--out {out} is a file; give a folder to write the export into.")
    if out.exists() and not request.overwrite:
        raise LabError(f"{out} already exists; pass --overwrite to replace it, or --out another folder.")
    blocking = next((parent for parent in out.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise LabError(f"--out {out} cannot be created because {blocking} is a file; give another folder.")
    return out


def _backend(name: str, fmt: str) -> Backend:
    if name == "lightning":
        frameworks.without_tensorflow()  # as train_lightning.py: this process never runs Keras
    backend = get_backend(name)
    if fmt not in backend.export_formats:
        raise LabError(f"a {name} run cannot be exported as {fmt}; its formats are "
                       f"{', '.join(backend.export_formats)}.")
    return backend


def parity_images(run_dir: Path, backend: Backend, checkpoint: Path) -> tuple[np.ndarray, dict]:
    """The run's first PARITY_IMAGES test images, or as many seeded uint8 images of the network's input shape when
    its dataset does not load here; and which, for export.json."""
    settings = make_settings(load_settings(run_dir))
    try:
        test = load_data(settings).test.images
        return test[:PARITY_IMAGES], {"images": "test", "dataset": settings.dataset, "count": min(len(test),
                                                                                                   PARITY_IMAGES)}
    except LabError as e:
        shape = backend.load_network(checkpoint, old_description(run_dir, checkpoint, None)).input_shape
        images = np.random.default_rng(SEED).integers(0, 256, (PARITY_IMAGES, *shape), dtype=np.uint8)
        return images, {"images": "seeded", "seed": SEED, "count": PARITY_IMAGES,
                        "why": f"the run's {settings.dataset} data did not load: {one_line(e)}"}


def _export(backend: Backend, checkpoint: Path, fmt: str, path: Path, images: np.ndarray,
            description) -> Exported:
    try:
        return backend.export(checkpoint, fmt, path, images, description)
    except LabError:
        raise
    except Exception as e:  # the exporter or the runtime failed: say which, in one line
        raise ExportFailed(f"exporting {checkpoint} as {fmt} failed ({type(e).__name__}: {one_line(e, limit=200)}); "
                           "nothing was written.") from None


def export_record(fmt: str, results: dict, weights: tuple[str, Path], exported: Exported, source: dict,
                  path: Path) -> dict:
    """export.json: what was exported (weights: best or last, and its file), how it is called, and how far it agrees
    with the framework's network on the parity images (source: which, and their H x W x C shape)."""
    which, checkpoint = weights
    source = dict(source)
    shape = [int(n) for n in source.pop("shape")]
    diff = np.abs(exported.reference.astype(np.float64) - exported.exported.astype(np.float64))
    disagree = top1_disagreements(exported.reference, exported.exported)
    record = {
        "format": fmt, "file": FILES[fmt], "backend": results["backend"], "model": results["model"],
        "checkpoint": which, "checkpoint_file": str(checkpoint), "opset": exported.details.get("opset"),
        "input": {"name": onnx_file.INPUT_NAME, "dtype": "uint8", "layout": "NHWC",
                  "shape": [None, *shape]},
        "output": {"name": onnx_file.OUTPUT_NAME, "dtype": "float32", "meaning": "logits, before any softmax"},
        "precision": {"trained": results["hyperparameters"].get("precision", "32"), "exported": "float32"},
        "parity": {**source, "runtime": RUNTIMES[fmt], "max_abs_logit_diff": float(diff.max()),
                   "top1_agree": disagree == 0, "top1_disagreements": disagree, "tolerance": TOLERANCE},
        "versions": exported.details.get("versions", {}),
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if fmt == "onnx":
        record["onnx_file"] = onnx_file.describe(path)  # read back from the file
    return record


def top1_disagreements(reference: np.ndarray, exported: np.ndarray, tolerance: float = TOLERANCE) -> int:
    """Images whose top-1 class differs, not counting near-ties: where the exported file's pick scores within
    `tolerance` of the network's in the network's own logits, the two are the same answer up to float rounding."""
    rows = np.arange(len(reference))
    picked, wanted = exported.argmax(1), reference.argmax(1)
    return int(np.sum((picked != wanted) & (reference[rows, wanted] - reference[rows, picked] > tolerance)))


def check_parity(parity: dict) -> None:
    if not parity["top1_agree"] or parity["max_abs_logit_diff"] > TOLERANCE:
        raise ExportFailed(f"the exported file disagrees with the network on {parity['count']} {parity['images']} "
                           f"images (top-1 differs on {parity['top1_disagreements']}, largest logit difference "
                           f"{parity['max_abs_logit_diff']:.3g} against {TOLERANCE:g}); nothing was written.")


@contextmanager
def staging(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary folder beside `out`, renamed to `out` when the block succeeds (an existing `out` replaced under
    overwrite) and removed when it fails, with the parents this created."""
    created = [parent for parent in (out, *out.parents) if not parent.exists()][1:]
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)  # mkdtemp makes it private; the folder published is an ordinary one
    try:
        yield folder
        if out.exists() and overwrite:
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / out.name)
            os.replace(folder, out)
            shutil.rmtree(old)
        else:
            os.replace(folder, out)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        for parent in created:  # innermost first
            try:
                parent.rmdir()
            except OSError:
                break
        raise
