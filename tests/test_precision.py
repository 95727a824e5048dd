"""--precision reaches the layers: a mixed-precision Keras run computes in its policy's dtype during fit."""
import pytest

from core.frameworks import keras
from lab.config.data import load_data
from lab.config.settings import make_settings


class ComputeDtypes(keras.callbacks.Callback):
    """The compute dtypes of the model's layers, read at the first training batch."""

    def __init__(self):
        super().__init__()
        self.seen = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.seen is None:
            self.seen = {layer.name: layer.compute_dtype for layer in self.model.layers}


@pytest.mark.parametrize(("precision", "dtype"), [("bf16-mixed", "bfloat16"), ("32", "float32")])
def test_keras_layers_compute_in_the_policy_dtype_during_fit(precision, dtype, tmp_path):
    from keras_models.training import BACKEND, train

    settings = make_settings({"dataset": "digits", "epochs": 1, "train_images": 64, "out": str(tmp_path),
                              "accelerator": "cpu", "precision": precision, "profile": False})
    plan = BACKEND.plan_devices(settings)
    probe = ComputeDtypes()
    try:
        train(settings, load_data(settings), tmp_path, plan, callbacks=(probe,))
    finally:
        keras.mixed_precision.set_global_policy("float32")  # leave the process as the other tests expect it
    convs = {name: d for name, d in probe.seen.items() if name.startswith("conv2d")}
    assert convs and set(convs.values()) == {dtype}
    assert probe.seen["logits"] == "float32"  # the output stays float32 under mixed precision
