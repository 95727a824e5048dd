"""Augmentation: one meaning (lab.specs.augmentation) applied alike by both backends, on training batches only."""
import numpy as np
import pytest
import torch

from core.errors import LabError
from datamodules.base import ImageSet, RawDataset
from datamodules.batching import train_batches, trained_images
from datamodules.splits import make_splits
from lab.config.settings import make_settings
from lab.specs import augmentation as A
from lightning_modules.components import augment as torch_augment
from lightning_modules.components import count_params
from lightning_modules.training import build_model

keras_augment = pytest.importorskip("keras_models.components.augment")
from datamodules.tf_data import eval_dataset, train_dataset  # noqa: E402

BACKENDS = {"lightning": torch_augment, "keras": keras_augment}
EVERYTHING = A.AugmentSpec(flip=True, crop_pad=4, rotate=20, color_jitter=0.3, cutout=8)
SIZE = (32, 32)
_real_draw = A.draw


def _images(n=16, shape=(32, 32, 3), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _draws(spec, n=16, step=0, **columns):
    draws = A.draw(spec, n, seed=0, step=step, size=SIZE)
    for name, value in columns.items():
        draws[:, getattr(A, name.upper())] = value
    return draws


# --- the shared definition -------------------------------------------------------------------------------

def test_draws_follow_the_documented_distributions():
    spec = A.AugmentSpec(flip=True, crop_pad=3, rotate=15, color_jitter=0.2, cutout=6)
    d = np.concatenate([A.draw(spec, 500, seed=1, step=s, size=SIZE) for s in range(4)])
    assert set(np.unique(d[:, A.FLIP])) == {0.0, 1.0} and 0.45 < d[:, A.FLIP].mean() < 0.55
    assert set(np.unique(d[:, A.SHIFT])) == set(range(-3, 4))
    angles = np.degrees(np.arctan2(d[:, 6], d[:, 3]))  # b0 = sin, a0 = cos
    assert -15 <= angles.min() < -14 and 14 < angles.max() <= 15
    assert d[:, A.JITTER].min() >= 0.8 and d[:, A.JITTER].max() <= 1.2 and d[:, A.JITTER].std() > 0.1
    centres = d[:, A.CUTOUT] + 3
    assert centres.min() == 0 and centres.max() == 31


def test_draws_depend_on_seed_and_step_only():
    same = [A.draw(EVERYTHING, 8, seed=3, step=7, size=SIZE) for _ in range(2)]
    np.testing.assert_array_equal(*same)
    assert not np.array_equal(same[0], A.draw(EVERYTHING, 8, seed=3, step=8, size=SIZE))
    assert not np.array_equal(same[0], A.draw(EVERYTHING, 8, seed=4, step=7, size=SIZE))


def test_settings_map_to_the_spec_and_impossible_sizes_are_refused():
    settings = make_settings({"flip": "true", "crop_pad": 4, "rotate": 10, "color_jitter": 0.1, "cutout": 8})
    spec = A.AugmentSpec.from_settings(settings)
    assert spec == A.AugmentSpec(True, 4, 10.0, 0.1, 8) and spec.active
    assert spec.describe() == "flip, crop-pad 4, rotate 10, color-jitter 0.1, cutout 8"
    assert not A.AugmentSpec.from_settings(make_settings({})).active
    with pytest.raises(LabError, match="crop-pad 8"):
        A.AugmentSpec(crop_pad=8).check((8, 8, 1))
    with pytest.raises(LabError, match="cutout 9"):
        A.AugmentSpec(cutout=9).check((8, 8, 1))


def test_a_bad_augmentation_leaves_no_run_folder(tmp_path):
    from lab.run.runner import run_settings

    settings = make_settings({"dataset": "digits", "crop_pad": 8, "out": str(tmp_path)})
    with pytest.raises(LabError, match="crop-pad 8"):
        run_settings("lightning", settings)
    assert not list(tmp_path.rglob("version_*"))


# --- each backend applies the definition exactly -------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_flip_and_crop_are_exact(backend):
    x = _images()
    spec = A.AugmentSpec(flip=True, crop_pad=4)
    draws = _draws(spec, flip=np.arange(16) % 2)
    out = BACKENDS[backend].apply_numpy(x, spec, draws)
    padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
    for i in range(16):
        flipped = np.pad(x[i, :, ::-1] if i % 2 else x[i], ((4, 4), (4, 4), (0, 0)))
        dy, dx = draws[i, A.SHIFT].astype(int) + 4
        np.testing.assert_array_equal(out[i], flipped[dy:dy + 32, dx:dx + 32])
    assert not np.array_equal(out, padded[:, 4:36, 4:36])


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_turns_counter_clockwise_about_the_centre(backend):
    x = _images(4)
    spec = A.AugmentSpec(rotate=90)
    draws = _draws(spec, 4, affine=A.rotation_maps(np.full(4, 90.0), *SIZE))
    out = BACKENDS[backend].apply_numpy(x, spec, draws)
    np.testing.assert_array_equal(out, np.rot90(x, k=1, axes=(1, 2)))
    still = BACKENDS[backend].apply_numpy(x, spec, _draws(spec, 4, affine=A.rotation_maps(np.zeros(4), *SIZE)))
    np.testing.assert_array_equal(still, x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jitter_scales_brightness_and_contrast_and_stays_in_range(backend):
    x = _images(3)
    spec = A.AugmentSpec(color_jitter=0.9)
    factors = np.array([[1.0, 1.0], [1.9, 1.0], [1.2, 0.5]], np.float32)
    out = BACKENDS[backend].apply_numpy(x, spec, _draws(spec, 3, jitter=factors)).astype(int)
    y = x.astype(np.float64) * factors[:, 0, None, None, None]
    mean = y.mean(axis=(1, 2, 3), keepdims=True)
    expected = np.clip(np.round((y - mean) * factors[:, 1, None, None, None] + mean), 0, 255)
    assert np.abs(out - expected).max() <= 1
    assert out[1].max() == 255 and (out[1] == 255).mean() > 0.3  # clipped, not wrapped around


@pytest.mark.parametrize("backend", BACKENDS)
def test_cutout_zeroes_one_square_that_may_stick_out(backend):
    x = np.full((2, 32, 32, 3), 200, np.uint8)
    spec = A.AugmentSpec(cutout=8)
    out = BACKENDS[backend].apply_numpy(x, spec, _draws(spec, 2, cutout=np.array([[10, 20], [-4, 28]])))
    expected = x.copy()
    expected[0, 10:18, 20:28] = 0
    expected[1, 0:4, 28:32] = 0
    np.testing.assert_array_equal(out, expected)


def test_both_backends_make_the_same_augmented_batch():
    x = _images(32)
    for spec in (EVERYTHING, A.AugmentSpec(flip=True, crop_pad=4), A.AugmentSpec(rotate=30, cutout=5)):
        draws = A.draw(spec, 32, seed=5, step=11, size=SIZE)
        torch_out = torch_augment.apply_numpy(x, spec, draws).astype(int)
        keras_out = keras_augment.apply_numpy(x, spec, draws).astype(int)
        assert np.abs(torch_out - keras_out).max() <= 1  # float rounding at .5 only
        assert (torch_out != keras_out).mean() < 1e-3


# --- wired into training: training batches only, reproducible ----------------------------------------------

def _settings(**kw):
    return make_settings({"flip": True, "crop_pad": 4, "rotate": 10, "cutout": 6, "seed": 2, **kw})


def test_lightning_augment_is_seeded_by_the_batch_index():
    augment = torch_augment.build_augment(_settings())
    x = torch.from_numpy(_images())
    first, again, later = augment(x, 3), augment(x, 3), augment(x, 4)
    assert torch.equal(first, again) and not torch.equal(first, later)
    assert first.dtype == torch.uint8 and first.shape == x.shape and not torch.equal(first, x)
    assert torch_augment.build_augment(make_settings({})) is None


def test_keras_pipeline_augments_training_batches_reproducibly_and_keeps_labels():
    part = ImageSet(_images(40), np.arange(40) % 4)
    augment = keras_augment.build_augment(_settings(), SIZE)
    plain = list(train_dataset(part, 16, seed=2, first_epoch=0, epochs=2).as_numpy_iterator())
    runs = [list(train_dataset(part, 16, 2, 0, 2, augment=augment).as_numpy_iterator()) for _ in range(2)]
    for (x, y), (a, ya), (b, _) in zip(plain, *runs):
        np.testing.assert_array_equal(y, ya)
        np.testing.assert_array_equal(a, b)
        assert a.shape == x.shape and a.dtype == np.uint8 and not np.array_equal(a, x)
    resumed = list(train_dataset(part, 16, 2, first_epoch=1, epochs=2, augment=augment).as_numpy_iterator())
    np.testing.assert_array_equal(resumed[0][0], runs[0][3][0])  # epoch 2 starts at global batch 3
    evaluated = np.concatenate([x for x, _ in eval_dataset(part).as_numpy_iterator()])
    np.testing.assert_array_equal(evaluated, part.images)


def test_both_backends_augment_a_training_batch_alike():
    x = _images(16)
    settings = _settings(color_jitter=0.2)
    lightning = torch_augment.build_augment(settings)(torch.from_numpy(x), 5).numpy().astype(int)
    keras = keras_augment.build_augment(settings, SIZE)(x, np.int64(5)).numpy().astype(int)
    assert np.abs(lightning - keras).max() <= 1


def test_lightning_augments_in_training_steps_only_and_adds_no_parameters():
    splits = _rgb_splits(n=64)
    plain, augmented = build_model(_settings(), splits), build_model(_settings(), splits, _Spy())
    assert count_params(plain.net) == count_params(augmented.net)
    assert set(plain.state_dict()) == set(augmented.state_dict())
    batch = (torch.from_numpy(splits.train.images[:8]), torch.from_numpy(splits.train.labels[:8]))
    augmented.validation_step(batch, 0)
    assert augmented.augment.calls == []
    augmented.training_step(batch, 0)
    assert augmented.augment.calls == [(8, 0)]
    augmented.eval()
    with torch.no_grad():
        assert torch.equal(augmented(batch[0]), augmented(batch[0]))


class _Spy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, images, step, part=None):
        self.calls.append((len(images), step))
        return images


def _rgb_splits(n=800, seed=0):
    """Four classes told apart by their colour: learnable in an epoch, whatever the flips and shifts."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]])
    images = colours[labels][:, None, None, :] + rng.normal(0, 40, (n, 32, 32, 3))
    raw = RawDataset("rgb", ImageSet(np.clip(images, 0, 255).astype(np.uint8), labels), None,
                     ("red", "green", "blue", "yellow"), "generated")
    return make_splits(raw, seed=0, val_fraction=0.15)


@pytest.mark.parametrize("backend", ["lightning", "keras"])
def test_cifar_cnn_trains_with_augmentation_on_training_batches_only(backend, tmp_path, monkeypatch):
    from lab.reports.metrics import accuracy
    from lab.run.backend import get_backend

    splits = _rgb_splits()
    settings = make_settings({"model": "cifar_cnn", "width": 8, "depth": 2, "dense_units": 32, "epochs": 1,
                              "batch_size": 8, "flip": True, "crop_pad": 4, "cutout": 8, "seed": 0})
    draws = []
    monkeypatch.setattr(A, "draw", lambda spec, n, seed, step, size:
                        draws.append((n, int(step))) or _real_draw(spec, n, seed, step, size))
    trainer = get_backend(backend)
    outcome = trainer.train(settings, splits, tmp_path, trainer.plan_devices(settings))
    trained = trained_images(len(splits.train), 8)
    # every training batch drawn for, nothing else (Keras may also prefetch from an iterator it discards)
    assert set(draws) == {(min(8, trained - 8 * s), s) for s in range(train_batches(len(splits.train), 8))}
    assert accuracy(outcome.test_logits, splits.test.labels) > 0.4  # chance is 0.25


@pytest.mark.parametrize("backend", ["lightning", "keras"])
def test_save_augmented_grid_is_linked_from_the_report(backend, tmp_path):
    from lab.reports.plots import png_to_array
    from lab.run.runner import run_settings

    settings = make_settings({"dataset": "digits", "model": "mlp", "hidden": 16, "epochs": 1, "crop_pad": 2,
                              "save_augmented": True, "out": str(tmp_path)})
    run_dir = run_settings(backend, settings)
    grid = run_dir / "figures" / "augmented.png"
    assert png_to_array(grid).std() > 0
    assert '<img src="figures/augmented.png" />' in (run_dir / "report.md").read_text()


# --- cifar_cnn, the model augmented in these labs ------------------------------------------------------------

@pytest.mark.parametrize("width, depth, dense", [(32, 3, 128), (16, 3, 64), (8, 2, 32)])
def test_cifar_cnn_has_equal_parameter_counts_on_rgb_images(width, depth, dense):
    from keras_models.components.network import build_network as keras_network
    from keras_models.components.network import count_params as keras_params
    from lab.specs.architectures import infer
    from lab.specs.models import model_spec
    from lightning_modules.components import build_network

    settings = make_settings({"model": "cifar_cnn", "width": width, "depth": depth, "dense_units": dense})
    spec = model_spec(settings, (32, 32, 3), 10)
    expected = infer(spec, (32, 32, 3))[1]
    assert count_params(build_network(spec, (32, 32, 3), (0.5,) * 3, (0.25,) * 3)) == expected
    assert keras_params(keras_network(spec, (32, 32, 3), (0.5,) * 3, (0.25,) * 3)) == expected
    # BatchNorm's moving mean and variance: two convolutions per block, then the dense head
    assert expected.non_trainable == 2 * (2 * sum(width * 2 ** b for b in range(depth)) + dense)


# --- augment_compare.py ------------------------------------------------------------------------------------

@pytest.mark.slow  # 23 s: 6 runs; section 3 of the lab runs in the default suite (tests/test_lab.py)
def test_augment_compare_runs_both_ways_on_both_backends(tmp_path, capsys):
    import augment_compare

    argv = ["--dataset", "digits", "--model", "mlp", "--epochs", "1", "--crop-pad", "1", "--flip", "false",
            "--out", str(tmp_path), "--config", str(_yaml(tmp_path))]
    assert augment_compare.main(argv) == 0
    runs = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("results.json"))
    assert runs == [f"mlp-digits-{way}/{backend}/version_0/results.json"
                    for way in ("aug", "noaug") for backend in ("keras", "lightning")]
    table = (tmp_path / "comparisons" / "mlp-digits-augment" / "comparison.md").read_text()
    assert "Train-val gap" in table and table.count(" pp |") == 4
    assert (tmp_path / "comparisons" / "mlp-digits-augment" / "comparison_val_curves.png").is_file()
    assert "mlp-digits-aug / keras" in capsys.readouterr().out
    assert augment_compare.main(argv) == 0  # the same command again reuses the finished runs
    assert len(list(tmp_path.rglob("results.json"))) == 4
    assert augment_compare.main(argv + ["--backends", "lightning", "--rerun"]) == 0
    again = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("version_1/results.json"))
    assert again == [f"mlp-digits-{way}/lightning/version_1/results.json" for way in ("aug", "noaug")]


def _yaml(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("hidden: 16\n")
    return path


@pytest.mark.parametrize("args, message", [
    (["--flip", "false", "--crop-pad", "0"], "no augmentation is selected"),
    (["--crop-pad", "8"], "crop-pad 8"),
    (["--backends", "jax"], "--backends must list"),
    (["--epochs", "two"], "invalid int value"),
])
def test_augment_compare_refuses_bad_input_with_exit_code_2(args, message, tmp_path, capsys, monkeypatch):
    import augment_compare
    from conftest import call_main

    monkeypatch.chdir(tmp_path)
    code, _, err = call_main(augment_compare.main, ["--dataset", "digits", *args, "--out", str(tmp_path)], capsys)
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        next(line for line in err.splitlines() if message in line)]
    assert not list(tmp_path.rglob("version_*"))
