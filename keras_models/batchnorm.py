"""--bn-recalibration on Keras (lab.run.recalibration): the network called in training mode, batch by batch, each
batch norm's momentum set so that its moving statistics end as the plain average of the batches', dropout off."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from core.frameworks import keras
from keras_models.components.network import all_layers
from lab.run.recalibration import BatchNorms

L = keras.layers


def tested_norms(model: keras.Model, checkpoint: Path) -> BatchNorms:
    """The batch norms of `model` that train (Keras runs frozen ones in inference mode), saved into `checkpoint`,
    which holds `model`'s weights."""
    norms = [layer for layer in all_layers(model) if isinstance(layer, L.BatchNormalization) and layer.trainable]
    return BatchNorms(len(norms), lambda batches: recompute(model, norms, batches), lambda: save(model, checkpoint))


def recompute(model: keras.Model, norms: list, batches: list[np.ndarray]) -> None:
    dropouts = [layer for layer in all_layers(model) if isinstance(layer, L.Dropout)]
    momenta, rates = [norm.momentum for norm in norms], [layer.rate for layer in dropouts]
    try:
        for layer in dropouts:
            layer.rate = 0.0  # read at each call: Dropout passes its inputs through at rate 0, in training too
        for done, batch in enumerate(batches):
            for norm in norms:  # moving = moving * momentum + batch * (1 - momentum): the mean of the batches so far
                norm.momentum = done / (done + 1)
            model(batch, training=True)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        for layer, rate in zip(dropouts, rates):
            layer.rate = rate


def save(model: keras.Model, checkpoint: Path) -> None:
    """The whole model (weights and optimizer state) saved over `checkpoint`, atomically."""
    staging = checkpoint.with_name(".saving-recalibrated.keras")
    model.save(staging)
    os.replace(staging, checkpoint)
