"""Keras callback: after every epoch, the whole model (weights and optimizer state) is saved
atomically as checkpoints/last-epoch=NNN.keras, which --resume continues from."""
from __future__ import annotations

import os
from pathlib import Path

from core.frameworks import keras
from lab.records.checkpoint_files import keras_last_files, last_file


class LastCheckpoint(keras.callbacks.Callback):
    def __init__(self, directory: str | Path):
        super().__init__()
        self.directory = Path(directory)

    def on_epoch_end(self, epoch, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / ".saving.keras"
        self.model.save(tmp)
        target = self.directory / last_file("keras", epoch + 1)
        os.replace(tmp, target)
        for old, _ in find_last(self.directory)[1:]:
            old.unlink(missing_ok=True)


def find_last(directory: str | Path) -> list[tuple[Path, int]]:
    """Saved last checkpoints, newest epoch first, as (path, epochs done)."""
    return keras_last_files(directory)
