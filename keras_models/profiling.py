"""The Keras calls of the per-step profile (lab.records.profile): a bare step on a copy of the model and its
optimizer (a tf.function of forward, loss, gradients and update, XLA-compiled when the run is), and a fresh copy
of the run's tf.data training pipeline alone; and the call of the inference speed (lab.records.inference_timing):
the model called directly, training=False."""
from __future__ import annotations

import random

import numpy as np

from callbacks.keras_profile import StepClock
from core.frameworks import keras, tf
from lab.records import inference_timing
from lab.records.profile import breakdown, next_batch, no_sync


def measure(model: keras.Model, pipeline, clock: StepClock, gpu: bool) -> dict | None:
    """The profile of the run that trained `model`; pipeline() gives a fresh training pipeline. The model, its
    optimizer and Python's and NumPy's random states (which Keras draws new layers' seeds from) are unchanged."""
    if clock.window.step_ms is None:
        return None
    states = random.getstate(), np.random.get_state()
    try:
        images, labels = next(iter(pipeline()))[:2]
        sync = tf.test.experimental.sync_devices if gpu else no_sync
        return breakdown(clock.window, _bare_step(model, images, labels), lambda: next_batch(pipeline), sync)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])


def inference_speed(model: keras.Model, images: np.ndarray, gpu: bool, **timing) -> dict:
    """How fast the model infers, called directly (model(x, training=False)); images: uint8 N x H x W x C, the test
    split; timing: lab.records.inference_timing.measure's arguments."""
    sync = tf.test.experimental.sync_devices if gpu else no_sync
    return inference_timing.measure(lambda batch: model(batch, training=False), images, sync, **timing)


def _bare_step(model: keras.Model, images, labels):
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    optimizer = model.optimizer.__class__.from_config(model.optimizer.get_config())
    optimizer.build(twin.trainable_variables)
    if len(optimizer.variables) == len(model.optimizer.variables):  # the run's moments and step count
        for mine, theirs in zip(optimizer.variables, model.optimizer.variables):
            mine.assign(theirs)
    loss_fn = model.loss

    @tf.function(jit_compile=bool(model.jit_compile))
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, twin(x, training=True))
        gradients = tape.gradient(loss, twin.trainable_variables)
        optimizer.apply_gradients(zip(gradients, twin.trainable_variables))
        return loss

    return lambda: step(images, labels)
