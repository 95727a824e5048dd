"""Both backends build the same networks: same parameter counts, same initialisation, logits out."""
import numpy as np
import pytest
import torch

from lab.architectures import Conv, Dense, Flatten, infer
from lab.errors import LabError
from lab.metrics import accuracy, cross_entropy, softmax
from lab.models import MODELS, model_spec
from lab.settings import make_settings
from lightning_modules.components import build_network, count_params as torch_params
from lightning_modules.training import build_module

keras_network = pytest.importorskip("keras_models.network")
keras_training = pytest.importorskip("keras_models.training")

SHAPES = [(28, 28, 1), (32, 32, 3), (8, 8, 1)]


def _settings(model, **kw):
    depth = {"cifar_cnn": 2}.get(model, 3)
    return make_settings({"model": model, "depth": depth, **kw})


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("shape", SHAPES)
def test_parameter_counts_match_across_backends(model, shape):
    settings = _settings(model, padding="same")
    spec = model_spec(settings, shape, 10)
    _, expected = infer(spec, shape)
    torch_count = torch_params(build_network(spec, shape, (0.5,) * shape[2], (0.25,) * shape[2]))
    keras_count = keras_network.count_params(keras_network.build_model(spec, shape, (0.5,) * shape[2], (0.25,) * shape[2]))
    assert torch_count == expected == keras_count
    assert expected.trainable > 0


def test_first_cnn_has_the_labs_parameter_count():
    # conv 3x3x1x32 + 32, dense 26*26*32*10 + 10
    spec = model_spec(_settings("first_cnn"), (28, 28, 1), 10)
    assert infer(spec, (28, 28, 1))[1].total == 320 + 216_330


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("kernel", [2, 3, 4])
def test_same_padding_output_shapes_match(stride, kernel):
    spec = [Conv(4, kernel, stride, "same"), Flatten(), Dense(3)]
    shape = (9, 10, 1)
    net = build_network(spec, shape, (0.0,), (1.0,))
    model = keras_network.build_model(spec, shape, (0.0,), (1.0,))
    x = np.random.default_rng(0).integers(0, 255, (2, *shape), dtype=np.uint8)
    assert net(torch.from_numpy(x)).shape == tuple(model(x).shape) == (2, 3)


def test_same_initialisation_scheme():
    """Glorot-uniform kernels (same bound on both sides) and zero biases."""
    spec = [Conv(32, 3), Flatten(), Dense(10)]
    net = build_network(spec, (28, 28, 1), (0.0,), (1.0,))
    model = keras_network.build_model(spec, (28, 28, 1), (0.0,), (1.0,))
    torch_conv = net[1].weight.detach().numpy()
    keras_conv = next(w for w in model.weights if "conv" in w.path and "kernel" in w.path).numpy()
    bound = np.sqrt(6 / (9 * 1 + 9 * 32))
    for w in (torch_conv, keras_conv):
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.9 * bound
        assert abs(w.std() - bound / np.sqrt(3)) < 0.1 * bound
    assert float(np.abs(net[1].bias.detach().numpy()).max()) == 0.0
    assert all(float(np.abs(w.numpy()).max()) == 0 for w in model.weights if w.path.endswith("bias"))


@pytest.mark.parametrize("bad, message", [
    ({"kernel_size": 30}, "larger than the 28x28 input"),
    ({"stride": 0}, "stride must be at least 1"),
    ({"padding": "full"}, "padding must be one of"),
    ({"filters": 0}, "filters must be at least 1"),
])
def test_impossible_shapes_are_refused(bad, message):
    with pytest.raises(LabError, match=message):
        model_spec(_settings("first_cnn", **bad), (28, 28, 1), 10)


def test_cifar_cnn_too_deep_for_the_image_is_refused():
    with pytest.raises(LabError, match="pooling size"):
        model_spec(_settings("cifar_cnn", depth=4), (8, 8, 1), 10)


def _confident_logits():
    logits = np.full((4, 10), -10.0, dtype=np.float32)
    labels = np.array([0, 3, 5, 9])
    logits[np.arange(4), labels] = 10.0
    return logits, labels


def test_softmax_applied_once_in_the_lightning_loss():
    """A confident correct prediction costs almost nothing; a double softmax would cost ~1.46."""
    settings = _settings("first_cnn")
    from datamodules.base import DataSplits, ImageSet

    tiny = ImageSet(np.zeros((4, 28, 28, 1), np.uint8), np.array([0, 3, 5, 9]))
    module = build_module(settings, DataSplits("t", tiny, tiny, tiny, tuple("0123456789"), "", (0.5,), (0.25,)))
    logits, labels = _confident_logits()
    torch.manual_seed(0)
    module.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Identity())
    loss = module.training_step((torch.from_numpy(logits), torch.from_numpy(labels)), 0)
    assert float(loss) < 1e-3


def test_softmax_applied_once_in_the_keras_loss():
    import keras

    model = keras_training.compile_model(keras.Sequential([keras.Input((10,))]), "adam", 1e-3)
    logits, labels = _confident_logits()
    assert float(model.loss(labels, logits)) < 1e-3


def test_shared_test_metrics():
    logits, labels = _confident_logits()
    assert cross_entropy(logits, labels) < 1e-3
    assert accuracy(logits, labels) == 1.0
    np.testing.assert_allclose(softmax(logits).sum(axis=1), 1.0)
    wrong = labels[::-1].copy()
    assert accuracy(logits, wrong) == 0.0
    assert cross_entropy(logits, wrong) > 10
