"""Keras 3 side: models built from lab.specs descriptions, and the Keras backend (keras_models.training).
TensorFlow, Keras and keras-tuner are imported through core.frameworks, which says why.

`from keras_models import BACKEND` gives the backend (lab.run.backend.Backend), imported on first use: importing
this package alone imports no TensorFlow. It does register the project's own Keras layers (ZooPreprocess) as
soon as Keras is loaded, so that `keras.models.load_model` reads every checkpoint of the lab after
`import keras_models`, whichever of the two is imported first."""
import importlib
import importlib.abc
import importlib.util
import sys

_LAYERS = "keras_models.components.backbones"  # where the project's serializable layers are defined


def __getattr__(name: str):
    if name == "BACKEND":
        from keras_models.training import BACKEND

        return BACKEND
    raise AttributeError(f"module 'keras_models' has no attribute {name!r}")


class _AfterKeras(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `keras` through the other finders and loads it with their loader, then imports _LAYERS."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        self.loader = spec.loader
        spec.loader = self
        return spec

    def __getattr__(self, name: str):  # anything else a loader offers (resources...), from the real one
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        importlib.import_module(_LAYERS)


if "keras" in sys.modules:
    importlib.import_module(_LAYERS)
elif not any(isinstance(finder, _AfterKeras) for finder in sys.meta_path):
    sys.meta_path.insert(0, _AfterKeras())
