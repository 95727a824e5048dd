"""Transfer learning: phases, freezing, weights loading and its errors, on both backends."""
import urllib.error
import zipfile

import numpy as np
import pytest
import torch
import torchvision

from callbacks.lightning_finetuning import PhaseFinetuning
from conftest import write_image_tree
from core.errors import LabError
from datamodules import load_splits
from lab.config.settings import make_settings
from lab.records.results import load_results
from lab.run.backend import get_backend
from lab.run.runner import finish, run_settings
from lab.specs import phases as T
from lab.specs.networks import describe
from lab.specs.weight_sources import resolve_weights
from lab.specs.zoo import BACKBONE_NAMES, BACKBONES
from lightning_modules import training as torch_training
from lightning_modules import weights as torch_weights
from lightning_modules.components.backbones import build_transfer, zoo_flops

pytest.importorskip("keras")
from core.frameworks import keras  # noqa: E402
from keras_models import training as keras_training  # noqa: E402
from keras_models import weights as keras_weights  # noqa: E402
from keras_models.components import backbones as keras_backbones  # noqa: E402

BACKENDS = ["lightning", "keras"]
TRAINERS = {"lightning": torch_training, "keras": keras_training}
SMALL = {"model": "cifar_cnn", "width": 4, "depth": 1, "dense_units": 8, "batch_size": 16, "epochs": 1}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Four classes of random 16x16 RGB images."""
    root = tmp_path_factory.mktemp("four-classes")
    write_image_tree(root / "train", classes=("cat", "dog", "fox", "owl"), per_class=10, size=(16, 16), seed=1)
    write_image_tree(root / "test", classes=("cat", "dog", "fox", "owl"), per_class=3, size=(16, 16), seed=2)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DUAL_LAB_CACHE", str(tmp_path_factory.mktemp("lab-cache")))
    yield
    mp.undo()


def _settings(data_dir, out, **kw):
    return make_settings({"dataset": "folder", "data_dir": str(data_dir), "out": str(out), **SMALL, **kw})


@pytest.fixture(scope="module")
def pretrained(data_dir, cache, tmp_path_factory):
    """Runs of both backends on cat and dog, from scratch in two phases: backend -> run folder."""
    out = tmp_path_factory.mktemp("runs")
    settings = _settings(data_dir, out, classes="cat,dog", finetune_epochs=1, name="pre")
    return {backend: run_settings(backend, settings) for backend in BACKENDS}


# --- backend-free ----------------------------------------------------------------------------------------

def test_unfreeze_counts_fractions_and_all():
    assert T.unfrozen_blocks("2", 5) == 2 and T.unfrozen_blocks("0", 5) == 0
    assert T.unfrozen_blocks("0.25", 13) == 4 and T.unfrozen_blocks("all", 9) == 9
    for bad in ("6", "-1", "1.5", "two", ""):
        with pytest.raises(LabError, match="unfreeze"):
            T.unfrozen_blocks(bad, 5)


def test_phase_plans():
    pre = make_settings({"weights": "imagenet", "model": "mobilenet", "epochs": 3, "finetune_epochs": 2,
                         "unfreeze": "2", "lr": 0.01})
    assert T.plan_phases(pre, 13) == [T.Phase(T.FEATURE_EXTRACTION, 0, 3, 0.01, 0),
                                      T.Phase(T.FINE_TUNING, 3, 5, 0.001, 2)]
    scratch = make_settings({"model": "mobilenet", "epochs": 4})
    assert T.plan_phases(scratch, 13) == [T.Phase(T.FROM_SCRATCH, 0, 4, 0.001, None)]
    assert T.is_transfer(scratch) and not T.is_transfer(make_settings({"model": "cifar_cnn"}))


def test_project_model_blocks():
    from lab.specs.models import model_spec

    def blocks(**kw):
        return T.spec_blocks(model_spec(make_settings(kw), (32, 32, 3), 10))
    assert blocks(model="cifar_cnn", depth=2) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert blocks(model="cnn", blocks=2, batch_norm=True) == [[0, 1], [2, 3], [4]]
    assert blocks(model="mlp", layers=2) == [[0], [1]] and blocks(model="first_cnn") == [[0]]


def test_settings_refuse_what_cannot_work():
    with pytest.raises(LabError, match="at least 32"):
        make_settings({"model": "mobilenet", "image_size": 16})
    with pytest.raises(LabError, match="imagenet is for the zoo backbones"):
        resolve_weights("imagenet", "keras", "cifar_cnn")


@pytest.mark.parametrize("backend", BACKENDS)
def test_not_a_checkpoint(backend, tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("not weights")
    archive = tmp_path / "photos.keras"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.txt", "hello")
    for path in (text, archive):
        with pytest.raises(LabError, match="is not a checkpoint"):
            resolve_weights(str(path), backend, "cifar_cnn")
    with pytest.raises(LabError, match="does not exist"):
        resolve_weights(str(tmp_path / "missing.pth"), backend, "cifar_cnn")


def test_a_pickled_module_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole module: only an unsafe load could read it
    with pytest.raises(LabError, match="does not load as a PyTorch weights file"):
        torch_weights.read_state(path)


def test_train_images_keeps_a_seeded_sample_and_the_whole_validation_and_test():
    from datamodules import sample_train

    splits = load_splits("digits")
    small = sample_train(splits, 100, seed=3)
    assert len(small.train) == 100 and len(small.val) == len(splits.val) and len(small.test) == len(splits.test)
    assert np.array_equal(small.train.labels, sample_train(splits, 100, seed=3).train.labels)
    assert len(set(small.train.labels.tolist())) == 10 and "100 of its" in small.source
    assert sample_train(splits, None, 0) is splits


def test_curves_mark_where_fine_tuning_starts():
    from lab.reports.plots import curves_figure

    history = [{"epoch": e, "train/loss": 1.0, "val/loss": 1.0, "train/acc": 0.5, "val/acc": 0.5} for e in (1, 2, 3)]
    lines = [line for ax in curves_figure(history, boundary=2).axes for line in ax.lines]
    assert [line.get_xdata()[0] for line in lines if line.get_label() == "fine-tuning starts"] == [2.5, 2.5]
    assert not any(line.get_label() == "fine-tuning starts" for ax in curves_figure(history).axes for line in ax.lines)


def test_transfer_compare_plans_the_same_budget_from_scratch(pretrained, data_dir):
    from lab.comparisons import commands, with_transfer

    argv = ["--dataset", "folder", "--data-dir", str(data_dir), "--model", "cifar_cnn", "--epochs", "2",
            "--finetune-epochs", "3", "--name", "x"]
    with pytest.raises(LabError, match="give --weights"):
        with_transfer.plan(commands.transfer_parser().parse_args(argv))
    args = commands.transfer_parser().parse_args(argv + ["--weights", str(pretrained["lightning"].parent.parent)])
    backends, experiment, (fine_tuned, scratch) = with_transfer.plan(args)
    assert backends == BACKENDS and experiment == "x"
    assert (fine_tuned.epochs, fine_tuned.finetune_epochs, fine_tuned.name) == (2, 3, "x-transfer")
    assert (scratch.weights, scratch.epochs, scratch.finetune_epochs, scratch.name) == (None, 5, 0, "x-scratch")


# --- zoo backbones -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", BACKBONE_NAMES)
def test_zoo_blocks_match_the_registry_on_both_backends(model):
    settings = make_settings({"model": model, "image_size": 32})
    splits = _fake_splits(2)
    assert len(build_transfer(settings, splits).blocks) == BACKBONES[model].blocks
    assert len(keras_backbones.build_transfer(settings, splits, None).blocks) == BACKBONES[model].blocks


def test_imagenet_without_network_or_cache_says_where_torch_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    with pytest.raises(LabError, match=rf"cannot download .*looked for {tmp_path}/hub/checkpoints/mobilenet"):
        torch_weights.imagenet_file("mobilenet_v3_small")


def test_imagenet_without_network_or_cache_says_where_keras_looked(tmp_path, monkeypatch):
    from keras.src.backend import config
    from keras.src.utils import file_utils

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setattr(file_utils, "urlretrieve", _no_network)
    settings = make_settings({"model": "mobilenet", "image_size": 32, "weights": "imagenet"})
    with pytest.raises(LabError, match=rf"cannot download .*looked in {tmp_path}/models"):
        keras_backbones.build_transfer(settings, _fake_splits(2), "imagenet")


def test_torchvision_file_loads_into_the_backbone_and_refuses_another_architecture(tmp_path):
    settings = make_settings({"model": "mobilenet", "image_size": 32})
    source = torchvision.models.mobilenet_v3_small()
    torch.save(source.state_dict(), tmp_path / "mobilenet.pth")
    parts = build_transfer(settings, _fake_splits(3))
    status = torch_weights.load_initial_weights(parts, resolve_weights(str(tmp_path / "mobilenet.pth"),
                                                                        "lightning", "mobilenet"), ("a", "b", "c"))
    assert status.startswith("new")
    assert all(torch.equal(v, parts.net.backbone.state_dict()[k]) for k, v in source.state_dict().items()
               if not k.startswith("classifier."))
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(LabError, match="holds weights for another architecture"):
        torch_weights.load_initial_weights(parts, resolve_weights(str(tmp_path / "resnet.pth"), "lightning",
                                                                   "mobilenet"), ("a", "b", "c"))


def test_keras_h5_weights_file_loads_into_the_backbone_and_refuses_another_architecture(tmp_path):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    def save(model, path):  # the layout of keras.applications' downloads
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
        return str(path)
    source = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3),
                                                 pooling="avg")
    settings = make_settings({"model": "mobilenet", "image_size": 32, "weights": save(source, tmp_path / "m.h5")})
    assert resolve_weights(settings.weights, "keras", "mobilenet").format == "hdf5"
    parts = keras_backbones.build_transfer(settings, _fake_splits(2), settings.weights)
    base = next(layer for layer in parts.net.layers if isinstance(layer, keras.Model))
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(base.weights, source.weights))
    other = save(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]), tmp_path / "other.h5")
    with pytest.raises(LabError, match="does not fit keras.applications.MobileNetV3Small"):
        keras_backbones.build_transfer(settings, _fake_splits(2), other)


# --- project checkpoints -----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_scratch_two_phase_run(backend, pretrained):
    results = load_results(pretrained[backend])
    assert [p["name"] for p in results["extra"]["phases"]] == [T.FROM_SCRATCH, T.FINE_TUNING]
    assert [r["epoch"] for r in results["history"]] == [1, 2] and results["extra"]["phase_boundary_epoch"] == 1
    assert results["extra"]["phases"][1]["lr"] == pytest.approx(1e-4)
    assert results["extra"]["phases"][1]["test_acc"] == results["test"]["accuracy"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_head_is_replaced_when_the_classes_differ(backend, pretrained, data_dir, tmp_path):
    for classes, kept in (("dog,fox,owl", False), ("fox,owl", False), ("cat,dog", True)):
        settings = _settings(data_dir, tmp_path, classes=classes, weights=str(pretrained[backend]))
        splits = _splits(settings)
        source = resolve_weights(settings.weights, backend, settings.model)
        if backend == "lightning":
            parts = build_transfer(settings, splits)
            status = torch_weights.load_initial_weights(parts, source, splits.class_names)
            ours = [t.detach().numpy() for t in parts.net.state_dict().values()]
            theirs = [t.numpy() for t in torch_weights.read_state(source.path).values()]
        else:
            parts = keras_backbones.build_transfer(settings, splits, None)
            status = keras_weights.load_checkpoint(parts, source.path, splits.class_names)
            ours = [w.numpy() for w in parts.net.weights]
            theirs = [w.numpy() for w in keras.models.load_model(source.path, compile=False).weights]
        assert status.startswith("loaded" if kept else "replaced"), status
        body = len(ours) - 2  # the head is the last two tensors: weight and bias
        assert all(np.array_equal(a, b) for a, b in zip(ours[:body], theirs[:body]))
        assert np.array_equal(ours[-1], theirs[-1]) == kept


def test_a_checkpoint_of_the_other_backend_is_refused(pretrained):
    keras_run, torch_run = pretrained["keras"], pretrained["lightning"]
    with pytest.raises(LabError, match="is a Keras model file, which the lightning trainer cannot load"):
        resolve_weights(str(keras_run / "checkpoints" / "best.keras"), "lightning", "cifar_cnn")
    with pytest.raises(LabError, match="is a PyTorch file, which the keras trainer cannot load"):
        resolve_weights(str(torch_run / "checkpoints" / "best.ckpt"), "keras", "cifar_cnn")
    with pytest.raises(LabError, match="it is a keras run"):
        resolve_weights(str(keras_run), "lightning", "cifar_cnn")
    assert resolve_weights(str(torch_run.parent.parent), "lightning", "cifar_cnn").path == (
        torch_run / "checkpoints" / "best.ckpt")  # an experiment folder: its latest finished run


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_of_another_architecture_are_refused(backend, pretrained, data_dir, tmp_path):
    settings = _settings(data_dir, tmp_path, classes="fox,owl", weights=str(pretrained[backend]), width=8)
    with pytest.raises(LabError, match="holds weights for another architecture.*differ in shape"):
        run_settings(backend, settings)
    assert not (tmp_path / settings.experiment).exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_fine_tuning_freezes_then_unfreezes_the_top_block(backend, pretrained, data_dir, tmp_path):
    """Phase 1 changes the head only; phase 2 the top block too; BatchNorm never changes, statistics included."""
    settings = _settings(data_dir, tmp_path, classes="fox,owl", weights=str(pretrained[backend]),
                         finetune_epochs=1, unfreeze="1", lr=0.05, finetune_lr=0.05)
    splits = _splits(settings)
    snapshots = []
    trainer = TRAINERS[backend]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    outcome = trainer.train(settings, splits, run_dir, get_backend(backend).plan_devices(settings),
                            callbacks=(_snapshotter(backend, settings, splits, snapshots),))
    first, after_1, after_2 = snapshots
    assert _changed(first, after_1) == {"head"}
    assert _changed(after_1, after_2) == {"head", "block 1"}
    results = finish(get_backend(backend), settings, splits, run_dir, outcome)
    phases = results["extra"]["phases"]
    assert [p["name"] for p in phases] == [T.FEATURE_EXTRACTION, T.FINE_TUNING]
    assert phases[0]["trainable_params"] == 8 * 2 + 2 and phases[1]["trainable_params"] > phases[0]["trainable_params"]
    assert results["extra"]["transfer"]["head"].startswith("replaced")
    assert "Transfer learning" in (run_dir / "report.md").read_text()


class _Stop(Exception):
    pass


@pytest.mark.parametrize("backend", BACKENDS)
def test_interrupted_fine_tuning_resumes_as_if_never_stopped(backend, pretrained, data_dir, tmp_path):
    """Killed in the middle of phase 2, the run continues with phase 2's trainable layers and optimizer.
    (No dropout: a resumed process does not continue the random stream dropout draws from.)"""
    settings = _settings(data_dir, tmp_path, classes="fox,owl", weights=str(pretrained[backend]), epochs=1,
                         finetune_epochs=2, unfreeze="1", dropout=0.0)
    splits, trainer = _splits(settings), TRAINERS[backend]
    plan = get_backend(backend).plan_devices(settings)
    results = {}
    for name, stop_after in (("reference", None), ("resumed", 2)):
        run_dir = tmp_path / name
        run_dir.mkdir()
        if stop_after:
            with pytest.raises(_Stop):
                trainer.train(settings, splits, run_dir, plan, callbacks=(_stopper(backend, stop_after),))
        outcome = trainer.train(settings, splits, run_dir, plan, resume=bool(stop_after))
        results[name] = finish(get_backend(backend), settings, splits, run_dir, outcome)
    reference, resumed = results["reference"], results["resumed"]
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3]
    for mine, theirs in zip(resumed["history"], reference["history"]):
        assert mine["val/acc"] == pytest.approx(theirs["val/acc"], abs=1e-6)
        assert mine["train/loss"] == pytest.approx(theirs["train/loss"], rel=1e-4)
    assert resumed["test"]["accuracy"] == pytest.approx(reference["test"]["accuracy"], abs=1e-6)
    assert [p["trainable_params"] for p in resumed["extra"]["phases"]] == [
        p["trainable_params"] for p in reference["extra"]["phases"]]


# --- end to end with a zoo backbone --------------------------------------------------------------------------

# Keras traces MobileNetV3's training graph once per phase: a minute each on two CPU cores.
@pytest.mark.parametrize("backend", ["lightning", pytest.param("keras", marks=pytest.mark.slow)])
def test_zoo_backbone_two_phase_run(backend, data_dir, cache, tmp_path):
    settings = _settings(data_dir, tmp_path, model="mobilenet", image_size=32, classes="cat,dog", finetune_epochs=1)
    results = load_results(run_settings(backend, settings))
    assert [r["epoch"] for r in results["history"]] == [1, 2]
    assert results["extra"]["transfer"]["blocks"] == 13 and results["params"]["total"] > 900_000
    # mobilenet is the same network on both backends, so Keras' count of its model is Lightning's measure_flops'
    assert results["flops_per_image"] == zoo_flops(describe(settings, _splits(settings))) > 0


# --- helpers -------------------------------------------------------------------------------------------------

def _no_network(*args, **kwargs):
    raise urllib.error.URLError("no network in the tests")


def _fake_splits(num_classes: int):
    from datamodules.base import DataSplits, ImageSet

    part = ImageSet(np.zeros((2, 32, 32, 3), np.uint8), np.arange(2) % num_classes)
    return DataSplits("fake", part, part, part, tuple(map(str, range(num_classes))), "memory", (0.5,) * 3, (0.25,) * 3)


def _splits(settings):
    return load_splits(settings.dataset, settings.data_dir, settings.seed, settings.val_fraction,
                       classes=settings.classes)


def _stopper(backend, epochs: int):
    """A callback raising _Stop once `epochs` epochs are done (and checkpointed: it runs after the checkpoints)."""
    if backend == "lightning":
        import pytorch_lightning as pl

        class Stop(pl.Callback):
            def on_train_epoch_end(self, trainer, pl_module):
                if trainer.current_epoch + 1 == epochs:
                    raise _Stop

        return Stop()

    class KerasStop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == epochs:
                raise _Stop

    return KerasStop()


def _snapshotter(backend, settings, splits, snapshots):
    """A callback recording, before training and after each epoch, {part: [(is_batchnorm, arrays)]}."""
    if backend == "lightning":
        import pytorch_lightning as pl

        def take(trainer):
            parts = next(c for c in trainer.callbacks if isinstance(c, PhaseFinetuning)).parts
            snapshots.append(_torch_snapshot(parts))

        def check_norms(module):  # frozen BatchNorm must normalise with its running statistics
            norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
            assert norms and not any(m.training for m in norms if not m.weight.requires_grad)

        return type("Snap", (pl.Callback,), {"on_train_start": lambda self, t, m: take(t),
                                             "on_train_batch_start": lambda self, t, m, *_: check_norms(m),
                                             "on_train_epoch_end": lambda self, t, m: take(t)})()

    class Snap(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if not snapshots:
                self.on_epoch_end(0)

        def on_epoch_end(self, epoch, logs=None):
            parts = keras_backbones.transfer_parts(self.model, settings, splits)
            snapshots.append(_keras_snapshot(parts))

    return Snap()


def _torch_snapshot(parts):
    from torch.nn.modules.batchnorm import _BatchNorm

    def layer(m):
        return isinstance(m, _BatchNorm), [t.detach().clone().numpy() for t in m.state_dict().values()]
    blocks = {f"block {i}": [layer(m) for module in block for m in module.modules()]
              for i, block in enumerate(parts.blocks)}
    return {**blocks, "head": [layer(parts.head)]}


def _keras_snapshot(parts):
    def layer(lay):
        return isinstance(lay, keras.layers.BatchNormalization), [w.numpy().copy() for w in lay.weights]
    blocks = {f"block {i}": [layer(lay) for lay in block] for i, block in enumerate(parts.blocks)}
    return {**blocks, "head": [layer(parts.head)]}


def _changed(before, after) -> set[str]:
    """The parts whose tensors changed; BatchNorm layers must never change."""
    changed = set()
    for name in before:
        for (norm, old), (_, new) in zip(before[name], after[name]):
            same = all(np.array_equal(a, b) for a, b in zip(old, new))
            assert same or not norm, f"BatchNorm of {name} changed"
            changed |= set() if same else {name}
    return changed
