"""One run, the same way for both backends: settings -> data -> backend training -> results.

Only the training itself (backend.train) is backend-specific; everything before and after it
(settings, data, run folder, test metrics, results.json, figures, report) is shared.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from core.errors import LabError, RunStopped
from core.io import write_bytes_atomic
from datamodules import DataSplits
from lab.config.data import load_data
from lab.config.machine import describe_device, machine_info
from lab.config.settings import ExperimentSettings, make_settings, settings_from_args
from lab.progress import progress
from lab.records.results import PREDICTIONS_FILE, achieved_gflops, save_results
from lab.records.rundirs import find_resumable, load_settings, new_run_dir, next_run_dir, save_settings
from lab.reports.metrics import accuracy, cross_entropy, softmax
from lab.reports.report import flops_text, inference_text, recalibration_text, write_run_outputs
from lab.run.backend import TITLES, Backend, Trained, get_backend, tensorboard_hparams
from lab.specs.architectures import forward_flops
from lab.specs.augmentation import check_settings as check_augmentation
from lab.specs.models import model_spec
from lab.specs.zoo import is_backbone


def run(backend: str, args: argparse.Namespace) -> Path | None:
    """The run the parsed flags of train_<backend>.py ask for (a new one, or --resume)."""
    with progress(getattr(args, "progress", None)):
        settings, resume_dir = resolve_settings(backend, args)
        return run_settings(backend, settings, resume_dir)


def run_settings(name: str, settings: ExperimentSettings, resume_dir: Path | None = None) -> Path | None:
    """Train, test and write every output of one run; returns its folder, or None on a process that does not
    write it (the ranks other than 0 of a multi-process run, which print nothing either)."""
    splits = load_data(settings)
    model_spec(settings, splits.input_shape, splits.num_classes)  # refuse impossible shapes first
    check_augmentation(settings, splits.input_shape)
    backend = get_backend(name)
    plan = backend.plan_devices(settings)
    writer = backend.is_writer(plan)
    with _quiet_unless(writer):
        run_dir = resume_dir or _new_run(settings, name, writer)
        if writer:
            save_settings(run_dir, settings.to_dict())  # a resumed run's may have a new --epochs
        try:
            trained = backend.train(settings, splits, run_dir, plan, resume=resume_dir is not None)
        except RunStopped:  # its checkpoints are what --resume continues from
            raise
        except LabError:  # e.g. --weights that do not fit: a new run leaves no half-written folder behind
            if resume_dir is None and writer:
                _remove_new_run(run_dir)
            raise
    if not writer:
        return None
    finish(backend, settings, splits, run_dir, trained)
    return run_dir


def _new_run(settings: ExperimentSettings, backend: str, writer: bool) -> Path:
    """A new run's folder; on the other ranks only a path, which they never write."""
    make = new_run_dir if writer else next_run_dir
    return make(settings.out, settings.experiment, backend)


@contextlib.contextmanager
def _quiet_unless(writer: bool):
    if writer:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def _remove_new_run(run_dir: Path) -> None:
    """The run's folder, and the experiment folders made for it when they are left empty."""
    shutil.rmtree(run_dir, ignore_errors=True)
    for parent in (run_dir.parent, run_dir.parent.parent):
        try:
            parent.rmdir()
        except OSError:  # not empty: other runs live there
            break


def resolve_settings(backend: str, args: argparse.Namespace) -> tuple[ExperimentSettings, Path | None]:
    """The run's settings; with --resume, those saved in the run folder (a new --epochs may extend it)."""
    settings = settings_from_args(args)
    resume = getattr(args, "resume", None)
    if not resume:
        return settings, None
    run_dir = find_resumable(resume, settings.out, settings.experiment, backend)
    saved = load_settings(run_dir)
    if "epochs" in vars(args):
        saved["epochs"] = settings.epochs
    return make_settings(saved), run_dir


def finish(backend: Backend, settings: ExperimentSettings, splits: DataSplits, run_dir: Path, trained: Trained) -> dict:
    """Test metrics, predictions, figures, report and TensorBoard extras; results.json last."""
    labels = splits.test.labels
    probs = softmax(trained.test_logits)
    results = build_results(backend.name, settings, splits, trained,
                            loss=cross_entropy(trained.test_logits, labels),
                            acc=accuracy(trained.test_logits, labels))
    _save_predictions(run_dir, probs, labels)
    figures = write_run_outputs(run_dir, results, probs, labels, splits.test.images, splits.class_names)
    backend.log_extras(run_dir, len(trained.record.history), {f"figures/{k}": v for k, v in figures.items()},
                       tensorboard_hparams(settings), {"hp/test_acc": results["test"]["accuracy"],
                                                       "hp/test_loss": results["test"]["loss"],
                                                       "hp/train_time_s": results["timing"]["total_s"]})
    save_results(run_dir, results)  # last: a results.json means the run is complete
    print_summary(results, run_dir)
    return results


def build_results(backend: str, settings: ExperimentSettings, splits: DataSplits, trained: Trained, loss: float,
                  acc: float) -> dict:
    return {
        "schema": 1,
        "experiment": settings.experiment,
        "backend": backend,
        "model": settings.model,
        "dataset": settings.dataset,
        "data_source": splits.source,
        "split_sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "hyperparameters": settings.to_dict(),
        "params": {"total": trained.params.total, "trainable": trained.params.trainable},
        "flops_per_image": flops_per_image(settings, splits, trained),
        "test": {"loss": loss, "accuracy": acc, **trained.tested,
                 **({} if trained.recalibration is None else {"bn_recalibration": trained.recalibration})},
        "timing": trained.record.timing(compiled=settings.compile),
        "history": trained.record.history,
        "epochs_run": len(trained.record.history),
        "class_names": list(splits.class_names),
        "device": trained.device,
        "distributed": trained.layout,
        "machine": machine_info(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "extra": trained.extra,
        "profile": None if trained.profile is None else {**trained.profile, "machine": describe_device(trained.device)},
        **inference_fields(trained),
    }


def inference_fields(trained: Trained) -> dict:
    """results.json's "inference" (lab.records.inference_timing), the machine named; null with "inference_skipped"
    (why) where the cores were shared with other training; nothing where it was not measured (--profile false)."""
    if trained.inference is None:
        return {}
    if "skipped" in trained.inference:
        return {"inference": None, "inference_skipped": trained.inference["skipped"]}
    return {"inference": {**trained.inference, "machine": describe_device(trained.device)}}


def flops_per_image(settings: ExperimentSettings, splits: DataSplits, trained: Trained) -> int | None:
    """Forward FLOPs of one image, one definition for both backends (lab.specs.architectures.forward_flops): a spec
    network's from its spec, the same figure whichever backend trained it; a zoo backbone's as the backend counted
    them on its own network (the two backends' resnet differ)."""
    if is_backbone(settings.model):
        return trained.zoo_flops
    return forward_flops(model_spec(settings, splits.input_shape, splits.num_classes), splits.input_shape)


def _save_predictions(run_dir: Path, probs: np.ndarray, labels: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, probs=probs.astype(np.float32), labels=labels)
    write_bytes_atomic(run_dir / PREDICTIONS_FILE, buffer.getvalue())


def _gflops(results: dict) -> str:
    gflops = achieved_gflops(results)
    return "" if gflops is None else f", {gflops:,.3g} GFLOP/s"


def print_summary(results: dict, run_dir: Path) -> None:
    t = results["timing"]
    print(f"\n{TITLES[results['backend']]} | {results['model']} on {results['dataset']} | "
          f"{results['params']['total']:,} parameters, {flops_text(results['flops_per_image'])} per image | "
          f"{results['epochs_run']} epochs on {results['device']}")
    print(f"test accuracy {results['test']['accuracy']:.2%}, test loss {results['test']['loss']:.4f}"
          f"{recalibration_text(results['test'])}")
    print(f"training time {t['total_s']:.2f} s (first epoch {t['first_epoch_s']:.2f} s, then "
          f"{t['steady_epoch_s']:.2f} s per epoch, {t['images_per_s']:,.0f} images/s{_gflops(results)})")
    print(f"inference: {inference_text(results)}")
    if t.get("compile_s") is not None:
        print(f"compiled: the first epoch took {t['compile_s']:.2f} s more than a steady one, compiling included")
    print(f"results: {run_dir}")
