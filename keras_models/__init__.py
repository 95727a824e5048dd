"""Keras 3 side: models built from lab.specs descriptions, and the Keras backend (keras_models.training).
TensorFlow, Keras and keras-tuner are imported through core.frameworks, which says why.

`from keras_models import BACKEND` gives the backend (lab.run.backend.Backend), imported on first use: importing
this package alone imports no TensorFlow."""


def __getattr__(name: str):
    if name == "BACKEND":
        from keras_models.training import BACKEND

        return BACKEND
    raise AttributeError(f"module 'keras_models' has no attribute {name!r}")
