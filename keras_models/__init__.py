"""Keras 3 side: models built from lab.architectures specs, and training with model.fit.

Importing this package first makes TensorFlow safe to load beside PyTorch: TensorFlow >= 2.20 loads
its LLVM into the global symbol table, and triton (which torch loads lazily, e.g. with its first
optimizer) then segfaults when it loads after it; triton loaded first is fine
(tensorflow/tensorflow#124205). Modules outside this package that import TensorFlow, Keras or
keras-tuner import this package before them.
"""
import importlib.util
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter, not errors
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401
