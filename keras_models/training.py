"""The Keras backend: one training loop for every run, a plain run being a run of one phase.

Each phase of a transfer run (lab.specs.phases) is one model.fit continuing the epoch count, with the
layers' trainable flags set and the model recompiled at the phase's learning rate before it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from callbacks.keras_checkpoint import LastCheckpoint, find_last
from callbacks.keras_profile import StepClock
from callbacks.keras_recorder import KerasRecorder
from core.errors import LabError
from core.frameworks import keras, tf
from datamodules.base import DataSplits
from datamodules.batching import EVAL_BATCH_SIZE
from datamodules.tf_data import eval_dataset, steps_per_epoch, train_dataset
from keras_models.batchnorm import tested_norms
from keras_models.compiling import check_xla, compile_model, warn_cpu_cost
from keras_models.components.augment import apply_numpy, build_augment
from keras_models.components.backbones import TransferParts, build_transfer, set_trainable, transfer_parts, zoo_flops
from keras_models.components.network import all_layers, build_network, count_params
from keras_models.exporting import FORMATS, export_checkpoint
from keras_models.profiling import inference_speed, measure
from keras_models.weights import load_checkpoint, zoo_weights
from lab.config.devices import DevicePlan, plan_devices
from lab.config.launch import Launch, detect
from lab.progress import progress_mode
from lab.records.checkpoint_files import best_file, checkpoint_file
from lab.records.recording import RunRecord
from lab.records.rundirs import CHECKPOINTS_DIR, best_checkpoint
from lab.reports.report import save_augmented_grid
from lab.run.backend import Exported, LoadedNetwork, Trained, inference_result, phase_stats, trained
from lab.run.recalibration import recalibrate
from lab.specs.models import model_spec
from lab.specs.optimizer import OptimizerSpec
from lab.specs.phases import Phase, TransferLog, is_transfer, plan_phases, transfer_details
from lab.specs.weight_sources import head_status, resolve_weights

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings

POLICIES = {"32": "float32", "16-mixed": "mixed_float16", "bf16-mixed": "mixed_bfloat16"}


class KerasBackend:
    name = "keras"
    export_formats = FORMATS

    def plan_devices(self, settings: ExperimentSettings) -> DevicePlan:
        _refuse_multi_worker(settings)
        gpus = tf.config.list_physical_devices("GPU")
        plan = plan_devices(settings, len(gpus), launch=Launch(None))
        _configure_gpus(gpus, hide=plan.accelerator == "cpu")
        if plan.accelerator == "cpu":
            _refuse_bf16_without_onednn(plan.precision)
            _configure_cpus(plan.per_node)
            _op_determinism(not settings.compile)
            if settings.compile:
                warn_cpu_cost()
        return plan

    def is_writer(self, plan: DevicePlan) -> bool:
        """Always: a Keras run is one process (MirroredStrategy drives every device of it)."""
        return True

    def train(self, settings: ExperimentSettings, splits: DataSplits, run_dir: Path, plan: DevicePlan,
              resume: bool = False, patience: int | None = None) -> Trained:
        return train(settings, splits, run_dir, plan, resume, patience)

    def log_extras(self, run_dir: Path, step: int, images: dict[str, np.ndarray], hparams: dict,
                   metrics: dict[str, float]) -> None:
        from tensorboard.plugins.hparams import api as hp

        writer = tf.summary.create_file_writer(str(run_dir))
        with writer.as_default():
            for tag, array in images.items():
                tf.summary.image(tag, array[None], step=step)
            hp.hparams(hparams)
            for tag, value in metrics.items():
                tf.summary.scalar(tag, value, step=0)
        writer.close()

    def load_network(self, checkpoint: Path, description: Callable[[], dict]) -> LoadedNetwork:
        """A .keras file holds the whole model; `description` is never needed."""
        model = keras.models.load_model(checkpoint, safe_mode=True)
        return LoadedNetwork(tuple(model.input_shape[1:]), lambda images: predict_logits(model, images))

    def export(self, checkpoint: Path, fmt: str, path: Path, images: np.ndarray,
               description: Callable[[], dict]) -> Exported:
        """A .keras file holds the whole model; `description` is never needed."""
        return export_checkpoint(checkpoint, fmt, path, images)


BACKEND = KerasBackend()


def _op_determinism(on: bool) -> None:
    """Deterministic ops on the CPU; off for --compile, as Keras runs no XLA under them."""
    from tensorflow.python.framework import config

    if on:
        config.enable_op_determinism()
    else:
        config.disable_op_determinism()


def build_model(settings: ExperimentSettings, splits: DataSplits) -> keras.Model:
    """The trainable model of a plain run: the network of the run's spec, compiled."""
    spec = model_spec(settings, splits.input_shape, splits.num_classes)
    model = build_network(spec, splits.input_shape, splits.mean, splits.std, name=settings.model,
                          sync_batchnorm=settings.sync_batchnorm)
    return compile_model(model, OptimizerSpec.from_settings(settings), settings.compile)


def train(settings: ExperimentSettings, splits: DataSplits, run_dir: Path, plan: DevicePlan, resume: bool = False,
          patience: int | None = None, callbacks: tuple = ()) -> Trained:
    """Backend.train; `callbacks` are added to every fit's (tests observe training with them)."""
    keras.backend.clear_session()  # drop the graphs of earlier runs in this process (run_lab, searches)
    keras.mixed_precision.set_global_policy(POLICIES[plan.precision])  # after clear_session, which resets it
    keras.utils.set_random_seed(settings.seed)
    with placement(plan):
        return _train(settings, splits, run_dir, plan, resume, [*callbacks, *_early_stopping(patience)])


def _train(settings: ExperimentSettings, splits: DataSplits, run_dir: Path, plan: DevicePlan, resume: bool,
           extra: list) -> Trained:
    record = RunRecord(run_dir, len(splits.train))
    log = TransferLog(run_dir) if is_transfer(settings) else None
    model, parts, done = _model(settings, splits, run_dir, resume, log)
    record.restore(done)
    model.summary()
    if settings.save_augmented:
        save_augmented_grid(run_dir, settings, splits, apply_numpy)
    summary_writer = tf.summary.create_file_writer(str(run_dir))
    phases = plan_phases(settings, len(parts.blocks) if parts else 0)
    clock = StepClock(gpu=plan.num_gpus > 0) if settings.profile and plan.world_size == 1 else None
    extra = [*extra, clock] if clock else extra
    for index, phase in enumerate(phases):
        if phase.end <= done:  # resumed after this phase
            continue
        if parts is not None and not phase.start < done:  # a transfer phase starting now, not resumed inside it
            set_trainable(parts, phase)
            compile_model(model, OptimizerSpec.from_settings(settings, lr=phase.lr), settings.compile)
        _fit(model, settings, splits, phase, max(done, phase.start), plan.world_size,
             _callbacks(record, summary_writer, run_dir / CHECKPOINTS_DIR, phase, phases[-1].end) + extra)
        if log is not None and index < len(phases) - 1:
            log.finish_phase(index, phase_stats(count_params(model), predict_logits(model, splits.test.images),
                                                splits.test.labels))
    tested = best_model(run_dir) if settings.test_weights == "best" else model
    profile = measure(model, lambda: _pipeline(settings, splits, 0, 1), clock, plan.num_gpus > 0) if clock else None
    norms = tested_norms(tested, checkpoint_file(run_dir, "keras", settings.test_weights))
    recalibration = recalibrate(settings, splits, norms, lambda: predict_logits(tested, splits.test.images))
    logits = predict_logits(tested, splits.test.images)
    speed = inference_result(settings.profile, plan,
                             lambda: inference_speed(tested, splits.test.images, plan.num_gpus > 0))
    return trained(logits, splits.test.labels, count_params(model), record, plan.describe(),
                   plan.batches(settings.batch_size), settings.test_weights, log, phases, profile,
                   zoo_flops(model, settings), speed, recalibration)


def best_model(run_dir: Path) -> keras.Model:
    """The model of the run's best checkpoint, for --test-weights best."""
    return keras.models.load_model(best_checkpoint(run_dir, best_file("keras")), safe_mode=True)


def _early_stopping(patience: int | None) -> list:
    return [] if patience is None else [keras.callbacks.EarlyStopping(monitor="val_acc", mode="max", patience=patience)]


def _model(settings: ExperimentSettings, splits: DataSplits, run_dir: Path, resume: bool,
           log: TransferLog | None) -> tuple[keras.Model, TransferParts | None, int]:
    """(model, its transfer blocks and head or None, epochs done): a resumed run's last checkpoint (weights,
    trainable flags and optimizer of its phase), else a new model with its initial weights."""
    saved = find_last(run_dir / CHECKPOINTS_DIR) if resume else []
    if saved:
        model = in_precision(keras.models.load_model(saved[0][0], safe_mode=True), settings.precision)
        model.jit_compile = settings.compile  # a checkpoint holds its own; the run's settings decide
        check_xla(model, settings.compile)
        return model, transfer_parts(model, settings, splits) if log is not None else None, saved[0][1]
    if log is None:
        return build_model(settings, splits), None, 0
    parts = _new_transfer(settings, splits, log)
    return parts.net, parts, 0


def in_precision(model: keras.Model, precision: str) -> keras.Model:
    """A loaded model computing in the run's precision. A .keras file keeps the dtype policy each layer was saved
    with, though its variables are float32 under every policy; so that checkpoints go both ways between 32-bit and
    mixed-precision runs, the layers saved under one of POLICIES take the run's, but the float32 logits."""
    policy = POLICIES[precision]
    for layer in all_layers(model):
        if layer.name != "logits" and layer.dtype_policy.name in POLICIES.values():
            layer.dtype_policy = policy
    return model


def _new_transfer(settings: ExperimentSettings, splits: DataSplits, log: TransferLog) -> TransferParts:
    source = resolve_weights(settings.weights, "keras", settings.model)
    parts = build_transfer(settings, splits, zoo_weights(source, settings.model))
    if source.format == "keras":
        head = load_checkpoint(parts, source.path, splits.class_names)
    else:  # none, or imagenet / an .h5 file that went into the backbone only
        head = head_status(None, splits.class_names)
    log.set_details(transfer_details(settings, source, parts.zoo_name or settings.model, len(parts.blocks), head))
    return parts


def _pipeline(settings: ExperimentSettings, splits: DataSplits, first: int, end: int, replicas: int = 1):
    return train_dataset(splits.train, settings.batch_size, settings.seed, first, end,
                         augment=build_augment(settings, splits.input_shape[:2]), replicas=replicas)


def _fit(model: keras.Model, settings: ExperimentSettings, splits: DataSplits, phase: Phase, first: int, replicas: int,
         callbacks: list) -> None:
    model.fit(
        _pipeline(settings, splits, first, phase.end, replicas),
        epochs=phase.end, initial_epoch=first, shuffle=False,  # the pipeline shuffles
        verbose=1 if progress_mode() == "bar" else 0,  # else KerasRecorder prints one line per epoch, or nothing
        steps_per_epoch=steps_per_epoch(splits.train, settings.batch_size, replicas),
        validation_data=eval_dataset(splits.val), callbacks=callbacks,
    )


def predict_logits(model: keras.Model, images: np.ndarray, batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    return model.predict(images, batch_size=batch_size, verbose=0)


def _callbacks(record: RunRecord, summary_writer, checkpoints: Path, phase: Phase,
               epochs: int) -> list[keras.callbacks.Callback]:
    """A phase's callbacks. Its best checkpoint replaces the earlier phases' (each phase's starts afresh), so
    that of a transfer run holds the best epoch of its last phase, as callbacks.lightning_checkpoint's."""
    best_so_far = max((row["val/acc"] for row in record.history if row["epoch"] > phase.start), default=None)
    return [
        KerasRecorder(record, summary_writer, epochs),  # before the checkpoints, so a saved epoch is always recorded
        keras.callbacks.ModelCheckpoint(checkpoints / best_file("keras"), monitor="val_acc", mode="max",
                                        save_best_only=True, initial_value_threshold=best_so_far),
        LastCheckpoint(checkpoints),
    ]


def _configure_gpus(gpus: list, hide: bool) -> None:
    """Hide the GPUs for a CPU run; else let TensorFlow take GPU memory as it needs it, not all at
    once, so that PyTorch can share the GPU in the same process (run_lab.py, the benchmarks)."""
    try:
        if hide:
            tf.config.set_visible_devices([], "GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # TensorFlow already started in this process; its devices are fixed
        pass


def _configure_cpus(count: int) -> None:
    """Split the CPU into `count` logical devices, so that MirroredStrategy can run on the CPU alone."""
    cpus = tf.config.list_physical_devices("CPU")
    if count > 1:
        try:
            tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError:  # TensorFlow already started in this process; its devices are fixed
            pass
    have = len(tf.config.list_logical_devices("CPU"))
    if have < count:
        raise LabError(f"--devices {count} asks for {count} CPU replicas but TensorFlow already started in this "
                       f"process with {have}; run the command in a new process.")


def _refuse_bf16_without_onednn(precision: str) -> None:
    """Without oneDNN TensorFlow computes bfloat16 in Eigen's emulation: a cifar_cnn epoch took 5.6x float32's
    (bench/README.md, bf16-mixed on the CPU)."""
    if precision == "bf16-mixed" and os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() in ("0", "false"):
        raise LabError("--precision bf16-mixed on the CPU needs TensorFlow's oneDNN kernels, which "
                       "TF_ENABLE_ONEDNN_OPTS=0 turns off (bfloat16 then runs 5x slower than float32); unset it or "
                       "use --precision 32.")


def _refuse_multi_worker(settings: ExperimentSettings) -> None:
    """Keras 3's fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585, tensorflow/tensorflow#72388)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    workers = sum(len(tasks) for tasks in config.get("cluster", {}).values())
    launched = detect()
    if workers > 1 or (settings.num_nodes or 1) > 1 or (launched.several and launched.kind != "lightning"):
        raise LabError("Keras trains on one machine: Keras 3's fit fails under MultiWorkerMirroredStrategy "
                       "(keras-team/keras#20585); unset TF_CONFIG, drop --num-nodes and start train_keras.py "
                       "without torchrun or srun, with --devices N for MirroredStrategy on N GPUs of one machine.")
    if settings.strategy != "auto":
        raise LabError(f"--strategy {settings.strategy} is Lightning's; Keras always uses MirroredStrategy on "
                       "several devices, so drop --strategy.")


def placement(plan: DevicePlan):
    """The context a run builds, trains and predicts in. On one CPU device a plain device scope: a
    OneDeviceStrategy made CPU epochs 1.42x as long (bench/keras_placement.py)."""
    if plan.world_size > 1:
        names = [f"/gpu:{i}" for i in plan.devices] if plan.num_gpus else [f"/cpu:{i}" for i in range(plan.per_node)]
        return tf.distribute.MirroredStrategy(names).scope()
    if plan.num_gpus == 1:
        return tf.distribute.OneDeviceStrategy(f"/gpu:{plan.devices[0]}").scope()
    return tf.device("/cpu:0")
