"""Keras 3 side: models built from lab.architectures specs, and training with model.fit."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter, not errors
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
