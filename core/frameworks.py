"""Torch and TensorFlow in one process: the one module that knows how, and why.

- torch and triton before TensorFlow, where they are installed:
  - TensorFlow >= 2.20 loads its LLVM into the global symbol table, and triton (which torch loads
    lazily, e.g. with its first optimizer) then segfaults when it loads after it; loaded first, it is
    fine (tensorflow/tensorflow#124205).
  - torch imported after TensorFlow cannot load its CUDA libraries: `torch.cuda.device_count()` warns
    "Error 302: Error loading CUDA libraries. GPU will not be used" (seen with torch 2.14 and
    TensorFlow 2.21). Imported first, it is fine. This costs a Keras-only process the import of torch.
- TensorFlow's environment: Keras 3 on the TensorFlow backend, without TensorFlow's start-up chatter.
- A process that never uses TensorFlow (train_lightning.py) calls `without_tensorflow()`: torch's
  TensorBoard writer otherwise imports all of TensorFlow, only to join paths.

Every module that uses TensorFlow, Keras or keras-tuner takes them from here, loaded on first use:

    from core.frameworks import keras, tf
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

_MODULES = {"tf": "tensorflow", "keras": "keras", "kt": "keras_tuner"}


def _prepare_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # start-up chatter, not errors
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" in sys.modules:
        return
    for name in ("torch", "triton"):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def __getattr__(name: str) -> types.ModuleType:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _prepare_tensorflow()
    return importlib.import_module(_MODULES[name])


def without_tensorflow() -> None:
    """For processes that train with PyTorch only: tensorboard's 'notf' marker gives torch's TensorBoard
    writer tensorboard's small stub instead of the whole of TensorFlow. Call it before torch loads
    TensorBoard; a process that also runs Keras must not, as Keras needs the real TensorFlow there."""
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
