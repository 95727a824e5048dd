"""A Keras transfer run (lab.transfer): one model.fit per phase, continuing the epoch count, with the
layers' trainable flags set and the model recompiled at the phase's learning rate before each."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from callbacks.keras_checkpoint import find_last
from datamodules.base import DataSplits
from datamodules.tf_data import eval_dataset, steps_per_epoch, train_dataset
from keras_models.augment import apply_numpy, build_augment
from keras_models.backbones import TransferModel, build_transfer_model, set_trainable, transfer_parts
from keras_models.network import count_params
from keras_models.training import _callbacks, compile_model, outcome, placement
from keras_models.weights import load_checkpoint, zoo_weights
from lab.augmentation import save_augmented_grid
from lab.backbones import BACKBONES, image_size, is_backbone
from lab.devices import DevicePlan
from lab.metrics import accuracy
from lab.outcome import Outcome
from lab.recording import RunRecord
from lab.transfer import Phase, PhaseStats, TransferLog, plan_phases
from lab.weights import WeightsSource, head_status, resolve_weights


def train(settings, splits: DataSplits, run_dir: Path, resume: bool, plan: DevicePlan,
          extra_callbacks: tuple = ()) -> Outcome:
    keras.utils.set_random_seed(settings.seed)
    with placement(plan):
        return _train(settings, splits, run_dir, resume, plan, extra_callbacks)


def _train(settings, splits: DataSplits, run_dir: Path, resume: bool, plan: DevicePlan,
           extra_callbacks: tuple) -> Outcome:
    record, log = RunRecord(run_dir, len(splits.train)), TransferLog(run_dir)
    parts, done = _model(settings, splits, run_dir, resume, log)
    record.restore(done)
    parts.model.summary()
    if settings.save_augmented:
        save_augmented_grid(run_dir, settings, splits, apply_numpy)
    writer = tf.summary.create_file_writer(str(run_dir))
    phases = plan_phases(settings, len(parts.blocks))
    logits = None
    for index, phase in enumerate(phases):
        if phase.end <= done:
            continue
        if not phase.start < done:  # not resumed in the middle of this phase
            set_trainable(parts, phase)
            compile_model(parts.model, settings.optimizer, phase.lr)
        _fit(parts.model, settings, splits, phase, max(done, phase.start),
             _callbacks(record, writer, run_dir / "checkpoints") + list(extra_callbacks))
        stats, logits = _test(parts.model, splits)
        log.finish_phase(index, stats)
    final = logits if logits is not None else _test(parts.model, splits)[1]
    return outcome(final, parts.model, record, plan, writer, log.summary(phases, record.history))


def _model(settings, splits: DataSplits, run_dir: Path, resume: bool, log: TransferLog) -> tuple[TransferModel, int]:
    """The model and the epochs it has done: a resumed run's last checkpoint (weights, trainable flags and
    optimizer of its phase), else a new model with the initial weights."""
    saved = find_last(run_dir / "checkpoints") if resume else []
    if saved:
        return transfer_parts(keras.models.load_model(saved[0][0], safe_mode=True), settings, splits), saved[0][1]
    return _new_model(settings, splits, log), 0


def _new_model(settings, splits: DataSplits, log: TransferLog) -> TransferModel:
    source = resolve_weights(settings.weights, "keras", settings.model)
    parts = build_transfer_model(settings, splits, zoo_weights(source, settings.model))
    if source.format == "keras":
        head = load_checkpoint(parts, source.path, splits.class_names)
    else:  # none, or imagenet / an .h5 file that went into the backbone only
        head = head_status(None, splits.class_names)
    log.set_details(_details(settings, source, parts, head))
    return parts


def _details(settings, source: WeightsSource, parts: TransferModel, head: str) -> dict:
    zoo = is_backbone(settings.model)
    return {"weights": source.describe(), "backbone": BACKBONES[settings.model].keras if zoo else settings.model,
            "blocks": len(parts.blocks), "head": head, **({"image_size": image_size(settings)} if zoo else {})}


def _fit(model: keras.Model, settings, splits: DataSplits, phase: Phase, first: int, callbacks: list) -> None:
    model.fit(
        train_dataset(splits.train, settings.batch_size, settings.seed, first, phase.end,
                      augment=build_augment(settings, splits.input_shape[:2])),
        epochs=phase.end, initial_epoch=first, shuffle=False,  # the pipeline shuffles
        steps_per_epoch=steps_per_epoch(splits.train, settings.batch_size),
        validation_data=eval_dataset(splits.val), callbacks=callbacks,
    )


def _test(model: keras.Model, splits: DataSplits) -> tuple[PhaseStats, np.ndarray]:
    """The phase's parameter counts and test accuracy, and the test logits."""
    logits = model.predict(splits.test.images, batch_size=1024, verbose=0)
    count = count_params(model)
    return PhaseStats(count.trainable, count.non_trainable, accuracy(logits, splits.test.labels)), logits
