"""Keras 3 side: models built from lab.specs descriptions, and the Keras backend (keras_models.training).
TensorFlow, Keras and keras-tuner are imported through core.frameworks, which says why.

Importing this package registers the project's own Keras layers (ZooPreprocess, the fused BatchNormalization), so
that `keras.models.load_model` reads every checkpoint of the lab after `import keras_models`. `from keras_models
import BACKEND` gives the backend (lab.run.backend.Backend); a Lightning-only command never imports this package."""
from keras_models.components import backbones as _layers  # noqa: F401  (registers the serializable layers)


def __getattr__(name: str):
    if name == "BACKEND":
        from keras_models.training import BACKEND

        return BACKEND
    raise AttributeError(f"module 'keras_models' has no attribute {name!r}")
