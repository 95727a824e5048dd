"""Both backends build the same networks: same parameter counts, same initialisation, logits out."""
import numpy as np
import pytest
import torch

from core.errors import LabError
from lab.config.settings import make_settings
from lab.reports.metrics import accuracy, cross_entropy, softmax
from lab.specs.architectures import Conv, Dense, Flatten, infer
from lab.specs.models import MODELS, model_spec
from lightning_modules.components import build_network
from lightning_modules.components import count_params as torch_params
from lightning_modules.training import build_model

keras_network = pytest.importorskip("keras_models.components.network")
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
    keras_model = keras_network.build_network(spec, shape, (0.5,) * shape[2], (0.25,) * shape[2])
    keras_count = keras_network.count_params(keras_model)
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
    model = keras_network.build_network(spec, shape, (0.0,), (1.0,))
    x = np.random.default_rng(0).integers(0, 255, (2, *shape), dtype=np.uint8)
    assert net(torch.from_numpy(x)).shape == tuple(model(x).shape) == (2, 3)


def test_same_initialisation_scheme():
    """Glorot-uniform kernels (same bound on both sides) and zero biases."""
    spec = [Conv(32, 3), Flatten(), Dense(10)]
    net = build_network(spec, (28, 28, 1), (0.0,), (1.0,))
    model = keras_network.build_network(spec, (28, 28, 1), (0.0,), (1.0,))
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


def _digits_shaped_splits():
    """DataSplits of digits' shape (8x8x1, 10 classes), only for building a model: their input shape, classes and
    normalisation. A narrow std spreads the normalised pixels over about +-10, so a freshly initialised network's
    logits lie several units apart; near 0, where fresh Glorot weights on plain pixels put them, one softmax and
    two give almost the same loss and the check below could not tell them apart."""
    from datamodules.base import DataSplits, ImageSet

    images = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 1), dtype=np.uint8)
    data = ImageSet(images, np.arange(10))
    return DataSplits("digits", data, data, data, tuple("0123456789"), "", (0.5,), (0.05,))


def _random_digits(seed: int, n: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1), dtype=np.uint8)


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _np_cross_entropy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy with one (log-)softmax over `outputs`, in float64."""
    x = outputs.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def _check_softmax_once(loss: float, logits: np.ndarray, outputs: np.ndarray, labels: np.ndarray, what: str) -> None:
    """logits: the last Dense layer's output; outputs: the whole network's; loss: the backend's own loss on them."""
    once = _np_cross_entropy(logits, labels)
    twice = _np_cross_entropy(_np_softmax(logits), labels)
    # (ii) the inputs make a double softmax measurable: two softmaxes cost at most log(9 + e) ~ 2.46 for 10 classes.
    assert abs(once - twice) > 0.5, f"test too weak: one softmax {once:.4f}, two {twice:.4f}"
    assert loss == pytest.approx(once, rel=1e-4, abs=1e-4), (
        f"{what} is {loss:.4f}; cross-entropy with one softmax over the logits is {once:.4f}, with two {twice:.4f}")
    # (i) the network returns raw logits: its outputs are the last Dense layer's, and no row is a distribution.
    rows_like_probabilities = (outputs >= 0).all(axis=1) & np.isclose(outputs.sum(axis=1), 1.0, atol=1e-3)
    assert not rows_like_probabilities.any(), (
        f"{int(rows_like_probabilities.sum())}/{len(outputs)} output rows are non-negative and sum to 1: "
        f"a softmax inside the network, e.g. {np.round(outputs[0], 3)}")
    np.testing.assert_allclose(outputs, logits, rtol=1e-5, atol=1e-5,
                               err_msg="the network's outputs are not its last Dense layer's logits")


def test_softmax_applied_once_in_the_lightning_loss():
    """The real first_cnn network and module: the training and validation losses are cross-entropy with exactly one
    softmax over the network's outputs, and those outputs are raw logits (nothing after the last Linear layer)."""
    from torch.nn import functional as F

    torch.manual_seed(0)
    module = build_model(_settings("first_cnn"), _digits_shaped_splits()).eval()
    last = [m for m in module.net.modules() if isinstance(m, torch.nn.Linear)][-1]
    seen = []
    last.register_forward_hook(lambda _module, _inputs, output: seen.append(output.detach().clone()))
    for seed in range(4):
        images = torch.from_numpy(_random_digits(seed))
        with torch.no_grad():
            outputs = module(images)
        logits = seen[-1]
        labels = logits.argmin(dim=1)  # the least likely class: one softmax costs far more than two could
        with torch.no_grad():
            loss = float(module.training_step((images, labels), 1))
            module.val_metrics.reset()
            module.validation_step((images, labels), 0)
            val_loss = float(module.val_metrics.compute()[0])
        assert float(F.cross_entropy(outputs, labels)) == pytest.approx(loss, rel=1e-5)
        for value, what in ((loss, "training_step's loss"), (val_loss, "validation loss")):
            _check_softmax_once(value, logits.numpy(), outputs.numpy(), labels.numpy(), what)


def test_softmax_applied_once_in_the_keras_loss():
    """The real first_cnn model, compiled as for training: its compiled loss (model.evaluate) is cross-entropy with
    exactly one softmax over the model's outputs, and those outputs are raw logits (nothing after the last Dense)."""
    from core.frameworks import keras

    keras.utils.set_random_seed(0)
    model = keras_training.build_model(_settings("first_cnn"), _digits_shaped_splits())
    last = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    logits_model = keras.Model(model.input, last.output)
    for seed in range(4):
        images = _random_digits(seed)
        outputs = np.asarray(model(images, training=False))
        logits = np.asarray(logits_model(images, training=False))
        labels = logits.argmin(axis=1)  # the least likely class: one softmax costs far more than two could
        loss = model.evaluate(images, labels, batch_size=len(images), verbose=0, return_dict=True)["loss"]
        _check_softmax_once(float(loss), logits, outputs, labels, "model.evaluate's loss")
        assert float(model.loss(labels, outputs)) == pytest.approx(_np_cross_entropy(outputs, labels), rel=1e-4)


def test_shared_test_metrics():
    logits, labels = _confident_logits()
    assert cross_entropy(logits, labels) < 1e-3
    assert accuracy(logits, labels) == 1.0
    np.testing.assert_allclose(softmax(logits).sum(axis=1), 1.0)
    wrong = labels[::-1].copy()
    assert accuracy(logits, wrong) == 0.0
    assert cross_entropy(logits, wrong) > 10


def test_a_lightning_checkpoint_rebuilds_its_module_without_the_dataset(tmp_path):
    """ImageClassifier's hyperparameters describe its network in plain types: load_from_checkpoint, with
    torch.load's weights_only, rebuilds the same network; a zoo backbone's description is as plain."""
    import pytorch_lightning as pl

    from datamodules import load_splits
    from datamodules.torch_data import ArraysDataModule
    from lab.specs.networks import describe
    from lightning_modules.classifier import ImageClassifier

    settings, splits = make_settings({"dataset": "digits"}), load_splits("digits")
    module = build_model(settings, splits)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False, accelerator="cpu",
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=ArraysDataModule(splits, 32))
    trainer.save_checkpoint(tmp_path / "module.ckpt")
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "module.ckpt", map_location="cpu")
    images = torch.from_numpy(splits.test.images[:16])
    with torch.no_grad():
        assert torch.equal(loaded.eval()(images), module.eval()(images))
    assert loaded.hparams.network["class_names"] == list(splits.class_names)
    zoo = describe(make_settings({"model": "mobilenet", "image_size": 32}), splits)
    torch.save(zoo, tmp_path / "zoo.pt")
    assert torch.load(tmp_path / "zoo.pt", weights_only=True) == zoo and zoo["zoo"] == "mobilenet"
    assert ImageClassifier(zoo).net.head[-1].out_features == splits.num_classes
