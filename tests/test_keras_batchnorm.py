"""The project's Keras batch norm (keras_models.components.network.BatchNormalization, TensorFlow's fused kernel)
computes what Keras' BatchNormalization computes: outputs, gradients and moving statistics, in training and in
inference, in float32 and under the mixed_bfloat16 policy, on tiny shapes; and checkpoints go both ways."""
import numpy as np
import pytest

network = pytest.importorskip("keras_models.components.network")
from core.frameworks import keras, tf  # noqa: E402
from lab.specs.architectures import BatchNorm, Conv, Dense, Flatten, ReLU  # noqa: E402

L = keras.layers
SHAPE = (16, 6, 6, 5)
# Measured (tests' shapes and cifar_cnn's 128x32x32x32): float32 within 5e-6 of the largest value; bf16 within
# one bf16 rounding of it (4e-3 at most, 2^-8 = 3.9e-3) for outputs and the input's gradient, whose dtype is
# bf16, and within 2e-5 for the float32 weights' gradients and the moving statistics.
TOLERANCE = {"float32": {"compute": 2e-5, "float32": 2e-5}, "mixed_bfloat16": {"compute": 2 ** -7, "float32": 5e-5}}


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


def _twins(shape):
    rng = np.random.default_rng(0)
    gamma, beta = rng.normal(1, 0.5, shape[-1]), rng.normal(0, 0.5, shape[-1])
    twins = [L.BatchNormalization(), network.BatchNormalization()]
    for layer in twins:
        layer.build(shape)
        layer.gamma.assign(gamma.astype("float32"))
        layer.beta.assign(beta.astype("float32"))
    return twins


def _step(layer, x, weights):
    """Training-mode output and the gradients of sum(output * weights) to the input, gamma and beta."""
    with tf.GradientTape() as tape:
        x = tf.cast(x, layer.compute_dtype)
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, "float32") * weights)
    return [y, *tape.gradient(loss, [x, layer.gamma, layer.beta])]


def _close(ours, theirs, tolerance, what):
    ours, theirs = np.asarray(ours, "float32"), np.asarray(theirs, "float32")
    worst = np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs))
    assert worst <= tolerance, f"{what}: {worst:.2e} of the largest value, above {tolerance:.0e}"


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"], indirect=True)
def test_fused_layer_computes_what_keras_layer_computes(policy):
    keras_bn, fused = _twins(SHAPE)
    tolerance = TOLERANCE[policy]
    rng = np.random.default_rng(1)
    for _ in range(3):
        x, weights = rng.normal(2, 3, SHAPE).astype("float32"), rng.normal(size=SHAPE).astype("float32")
        theirs, ours = _step(keras_bn, x, weights), _step(fused, x, weights)
        assert ours[0].dtype == theirs[0].dtype == keras.backend.standardize_dtype(fused.compute_dtype)
        for name, a, b, kind in zip(("output", "input gradient", "gamma gradient", "beta gradient"), ours, theirs,
                                    ("compute", "compute", "float32", "float32")):
            _close(a, b, tolerance[kind], name)
    _close(fused.moving_mean, keras_bn.moving_mean, tolerance["float32"], "moving mean")
    _close(fused.moving_variance, keras_bn.moving_variance, tolerance["float32"], "moving variance")
    assert np.all(np.abs(fused.moving_variance.numpy() - 1) > 0.05)  # three steps moved them from 1
    x = tf.cast(rng.normal(2, 3, SHAPE).astype("float32"), fused.compute_dtype)
    _close(fused(x, training=False), keras_bn(x, training=False), tolerance["compute"], "inference output")


def test_moving_variance_takes_the_biased_variance_as_keras_does():
    """The kernel gives the unbiased variance; Keras' moments (and so the fused layer) the biased one."""
    x = np.arange(2 * 1 * 1 * 2, dtype="float32").reshape(2, 1, 1, 2)  # per channel: two values 2 apart
    fused = network.BatchNormalization(momentum=0.0)
    fused(x, training=True)
    np.testing.assert_allclose(fused.moving_variance.numpy(), [1.0, 1.0], rtol=1e-6)  # not 2, the unbiased
    np.testing.assert_allclose(fused.moving_mean.numpy(), [1.0, 2.0], rtol=1e-6)


def _op_types(layer, shape, training=True) -> set[str]:
    graph = tf.function(lambda x: layer(x, training=training)).get_concrete_function(
        tf.TensorSpec(shape, "float32")).graph
    return {op.type for op in graph.get_operations()}


def test_the_fused_kernel_runs_where_it_applies_and_keras_own_elsewhere():
    assert "FusedBatchNormV3" in _op_types(network.BatchNormalization(), (4, 3, 3, 2))
    assert "FusedBatchNormV3" in _op_types(network.BatchNormalization(), (4, 3, 3, 2), training=False)
    dense = network.BatchNormalization()  # after a Dense layer: 2-D, Keras' own call
    assert "FusedBatchNormV3" not in _op_types(dense, (4, 6))
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    np.testing.assert_allclose(dense(x, training=True), L.BatchNormalization()(x, training=True), rtol=1e-6,
                               atol=1e-6)


def _tiny(batch_norm, monkeypatch) -> keras.Model:
    """A conv, batch norm, dense network, built as build_network builds it, with the given batch norm class."""
    monkeypatch.setattr(network, "BATCH_NORM", batch_norm)
    keras.backend.clear_session()  # the layers' names counted from 0 again
    keras.utils.set_random_seed(0)
    spec = [Conv(4, 3, 1, "same"), BatchNorm(), ReLU(), Flatten(), Dense(8), BatchNorm(), ReLU(), Dense(3)]
    return network.build_network(spec, (6, 6, 1), [0.5], [0.25])


def test_checkpoints_go_both_ways_between_keras_layer_and_the_fused_one(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (16, 6, 6, 1), dtype=np.uint8), rng.integers(0, 3, 16)
    before = _tiny(L.BatchNormalization, monkeypatch)  # as the lab built its networks before the fused layer
    after = _tiny(network.BatchNormalization, monkeypatch)
    assert type(after.layers[4]) is network.BatchNormalization
    assert [w.path for w in after.weights] == [w.path for w in before.weights]
    before.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before.fit(x, y, batch_size=8, epochs=1, verbose=0)  # moving statistics away from 0 and 1
    before.save(tmp_path / "before.keras")
    after.load_weights(tmp_path / "before.keras")
    np.testing.assert_allclose(after(x, training=False), before(x, training=False), rtol=1e-5, atol=1e-6)

    after.save(tmp_path / "after.keras")
    loaded = keras.models.load_model(tmp_path / "after.keras", safe_mode=True)
    assert type(loaded.layers[4]) is network.BatchNormalization
    again = _tiny(L.BatchNormalization, monkeypatch)
    again.load_weights(tmp_path / "after.keras")
    for model in (loaded, again):
        np.testing.assert_allclose(model(x, training=False), before(x, training=False), rtol=1e-5, atol=1e-6)


def test_bench_keras_batchnorm_times_every_way_in_both_precisions(capsys):
    import json

    from bench.keras_batchnorm import main

    main(["--in-process", "--threads", "0", "--width", "4", "--depth", "1", "--batch-size", "4", "--steps", "1",
          "--rounds", "1"])
    printed = capsys.readouterr().out
    out = json.loads(printed[printed.index("\n{") + 1:])
    assert printed.count("round 1:") == 6 and out["in_process"]
    assert network.BATCH_NORM is network.BatchNormalization  # put back, as the global policy
    assert keras.mixed_precision.global_policy().name == "float32"
    for precision in ("32", "bf16-mixed"):
        assert all(out[f"{precision} {way} {clock} ms"] > 0 for way in ("keras", "fused", "none")
                   for clock in ("wall", "cpu"))
        assert out[f"{precision} fused/keras wall"] > 0 and out[f"{precision} none/keras cpu"] > 0
