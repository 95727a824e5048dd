"""Train and test one experiment with Keras model.fit."""
from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from callbacks.keras_checkpoint import LastCheckpoint, find_last
from callbacks.keras_recorder import KerasRecorder
from datamodules.base import DataSplits
from datamodules.tf_data import eval_dataset, steps_per_epoch, train_dataset
from keras_models.augment import apply_numpy, build_augment
from keras_models.network import build_model, count_params
from lab.augmentation import save_augmented_grid
from lab.devices import DevicePlan, plan_devices
from lab.models import model_spec
from lab.outcome import Outcome
from lab.recording import RunRecord
from lab.transfer import is_transfer

POLICIES = {"32": "float32", "16-mixed": "mixed_float16", "bf16-mixed": "mixed_bfloat16"}


def compile_model(model: keras.Model, optimizer: str, lr: float) -> keras.Model:
    opt = keras.optimizers.SGD(lr, momentum=0.9) if optimizer == "sgd" else keras.optimizers.Adam(lr)
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")])
    return model


def build_compiled(settings, splits: DataSplits) -> keras.Model:
    spec = model_spec(settings, splits.input_shape, splits.num_classes)
    model = build_model(spec, splits.input_shape, splits.mean, splits.std, name=settings.model)
    return compile_model(model, settings.optimizer, settings.lr)


def train(settings, splits: DataSplits, run_dir: Path, resume: bool, plan: DevicePlan,
          extra_callbacks: tuple = ()) -> Outcome:
    if is_transfer(settings):  # two phases, weights to load: keras_models/transfer.py
        from keras_models import transfer

        return transfer.train(settings, splits, run_dir, resume, plan, extra_callbacks)
    keras.utils.set_random_seed(settings.seed)
    with placement(plan):
        return _train(settings, splits, run_dir, resume, plan, extra_callbacks)


def _train(settings, splits: DataSplits, run_dir: Path, resume: bool, plan: DevicePlan,
           extra_callbacks: tuple) -> Outcome:
    record = RunRecord(run_dir, len(splits.train))
    model, first_epoch = _model(settings, splits, run_dir / "checkpoints", resume)
    record.restore(first_epoch)
    model.summary()
    if settings.save_augmented:
        save_augmented_grid(run_dir, settings, splits, apply_numpy)
    writer = tf.summary.create_file_writer(str(run_dir))
    if first_epoch < settings.epochs:  # else resumed with every epoch done (killed before its results)
        _fit(model, settings, splits, first_epoch, _callbacks(record, writer, run_dir / "checkpoints") +
             list(extra_callbacks))
    return outcome(model.predict(splits.test.images, batch_size=1024, verbose=0), model, record, plan, writer)


def _fit(model: keras.Model, settings, splits: DataSplits, first_epoch: int, callbacks: list) -> None:
    model.fit(
        train_dataset(splits.train, settings.batch_size, settings.seed, first_epoch, settings.epochs,
                      augment=build_augment(settings, splits.input_shape[:2])),
        epochs=settings.epochs, initial_epoch=first_epoch, shuffle=False,  # the pipeline shuffles
        steps_per_epoch=steps_per_epoch(splits.train, settings.batch_size),
        validation_data=eval_dataset(splits.val),
        callbacks=callbacks,
    )


def outcome(test_logits, model: keras.Model, record: RunRecord, plan: DevicePlan, writer,
            extra: dict | None = None) -> Outcome:
    return Outcome(test_logits=test_logits, params=count_params(model), record=record, device=_describe(plan),
                   log_images=lambda images: _log_images(writer, images, len(record.history)),
                   log_hparams=lambda hparams, metrics: _log_hparams(writer, hparams, metrics), extra=extra)


def configure_devices(settings) -> DevicePlan:
    gpus = tf.config.list_physical_devices("GPU")
    plan = plan_devices(settings, len(gpus))
    _configure_gpus(gpus, hide=plan.accelerator == "cpu")
    if plan.accelerator == "cpu":
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(POLICIES[plan.precision])
    return plan


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


def placement(plan: DevicePlan):
    """The context a run builds, trains and predicts in. On the CPU a plain device scope: a
    OneDeviceStrategy made CPU epochs 1.42x as long (bench/keras_placement.py)."""
    if plan.num_gpus > 1:
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in plan.devices]).scope()
    if plan.num_gpus == 1:
        return tf.distribute.OneDeviceStrategy(f"/gpu:{plan.devices[0]}").scope()
    return tf.device("/cpu:0")


def _model(settings, splits: DataSplits, checkpoints: Path, resume: bool) -> tuple[keras.Model, int]:
    saved = find_last(checkpoints) if resume else []
    if saved:
        path, epochs_done = saved[0]
        return keras.models.load_model(path, safe_mode=True), epochs_done
    return build_compiled(settings, splits), 0


def _callbacks(record: RunRecord, writer, checkpoints: Path) -> list[keras.callbacks.Callback]:
    best_so_far = max((row["val/acc"] for row in record.history), default=None)
    return [
        KerasRecorder(record, writer),  # before the checkpoints, so a saved epoch is always recorded
        keras.callbacks.ModelCheckpoint(checkpoints / "best.keras", monitor="val_acc", mode="max",
                                        save_best_only=True, initial_value_threshold=best_so_far),
        LastCheckpoint(checkpoints),
    ]


def _log_images(writer, images: dict, step: int) -> None:
    with writer.as_default():
        for tag, array in images.items():
            tf.summary.image(tag, array[None], step=step)
    writer.flush()


def _log_hparams(writer, hparams: dict, metrics: dict) -> None:
    from tensorboard.plugins.hparams import api as hp

    with writer.as_default():
        hp.hparams({k: ("none" if v is None else v) for k, v in hparams.items()})
        for tag, value in metrics.items():
            tf.summary.scalar(tag, value, step=0)
    writer.flush()


def _describe(plan: DevicePlan) -> str:
    if plan.accelerator == "cpu":
        return "cpu"
    return f"gpu x{plan.num_gpus}"
