"""--bn-recalibration: after training, each batch norm that trains gets the plain average of the batches' statistics
over a seeded sample of training images, computed here apart from the tested checkpoint's network and compared
with what the checkpoint holds; the checkpoint scores the test set as results.json says; bench.bn_statistics
recomputes as the run did."""
import json

import numpy as np
import pytest
import torch

import core.frameworks
from bench import bn_statistics
from core.errors import LabError
from datamodules import load_splits
from datamodules.batching import recalibration_batches
from lab.config.settings import make_settings
from lab.records.checkpoint_files import checkpoint_file
from lab.records.results import PREDICTIONS_FILE
from lab.reports.report import recalibration_text
from lab.run import train_cli
from lab.run.backend import get_backend
from lab.run.recalibration import BatchNorms, recalibrate
from lightning_modules import training as torch_training
from lightning_modules.batchnorm import tested_norms as torch_norms

pytest.importorskip("keras")
from core.frameworks import keras  # noqa: E402
from keras_models import training as keras_training  # noqa: E402
from keras_models.batchnorm import tested_norms as keras_norms  # noqa: E402

BASE = {"dataset": "digits", "model": "cnn", "blocks": 1, "batch_norm": True, "train_images": 400, "epochs": 1,
        "seed": 3, "batch_size": 32, "bn_recalibration": 200}


def test_the_sample_is_seeded_drawn_across_the_split_and_batched():
    batches = recalibration_batches(1000, 200, 32, seed=3)
    assert [len(b) for b in batches] == [32] * 6 + [8]
    drawn = np.concatenate(batches)
    assert len(set(drawn)) == 200 and drawn.min() >= 0 and drawn.max() < 1000
    assert np.array_equal(drawn, np.concatenate(recalibration_batches(1000, 200, 32, seed=3)))
    assert not np.array_equal(drawn, np.concatenate(recalibration_batches(1000, 200, 32, seed=4)))
    # a split stored class by class: each batch spans it rather than one stretch of it
    assert all(np.ptp(b) > 500 for b in batches[:-1])
    assert sum(map(len, recalibration_batches(50, 200, 32, seed=0))) == 50  # never more than the split holds


def test_off_and_without_batch_norms_nothing_is_computed():
    def never(*_):
        raise AssertionError("called")

    splits = load_splits("digits", train_images=100)
    off = make_settings({**BASE, "bn_recalibration": 0})
    assert recalibrate(off, splits, BatchNorms(1, never, never), never) is None
    assert recalibrate(make_settings(BASE), splits, BatchNorms(0, never, never), never) == {"images": 0, "layers": 0}
    with pytest.raises(LabError, match="bn-recalibration must be 0 or more"):
        make_settings({**BASE, "bn_recalibration": -1})


def test_only_the_batch_norms_that_train_count():
    splits = load_splits("digits", train_images=100)
    plain = make_settings({**BASE, "model": "first_cnn"})
    assert torch_norms(torch_training.build_model(plain, splits), None, None, None).count == 0
    assert keras_norms(keras_training.build_model(plain, splits), None).count == 0
    settings = make_settings({**BASE, "blocks": 2, "pool": False})
    model = torch_training.build_model(settings, splits)
    assert torch_norms(model, None, None, None).count == 2
    next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)).weight.requires_grad_(False)  # frozen
    assert torch_norms(model, None, None, None).count == 1
    network = keras_training.build_model(settings, splits)
    assert keras_norms(network, None).count == 2
    next(layer for layer in network.layers if isinstance(layer, keras.layers.BatchNormalization)).trainable = False
    assert keras_norms(network, None).count == 1


def _norm_statistics(backend, checkpoint, splits, batches):
    """(the first batch norm's running mean and variance in `checkpoint`, the plain average of its inputs' per-batch
    mean and variance over `batches`, computed here from the checkpoint's network)."""
    if backend == "keras":
        model = keras.models.load_model(checkpoint)
        norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
        inputs = keras.Model(model.input, norm.input)
        seen = [np.asarray(inputs(batch, training=False), np.float64) for batch in batches]
        means = [x.mean(axis=(0, 1, 2)) for x in seen]
        variances = [x.var(axis=(0, 1, 2)) for x in seen]  # biased, as Keras' moments
        return (np.asarray(norm.moving_mean), np.asarray(norm.moving_variance)), (means, variances)
    model = torch_training.load_classifier(checkpoint, None)
    norm = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen = []
    norm.register_forward_hook(lambda module, args, out: seen.append(args[0].double()))
    with torch.no_grad():
        for batch in batches:
            model(torch.from_numpy(batch))
    means = [x.mean(dim=(0, 2, 3)).numpy() for x in seen]
    variances = [x.var(dim=(0, 2, 3), unbiased=True).numpy() for x in seen]  # unbiased, as PyTorch's
    return (norm.running_mean.numpy(), norm.running_var.numpy()), (means, variances)


@pytest.mark.parametrize("backend,weights", [("lightning", "last"), ("lightning", "best"), ("keras", "last"),
                                             ("keras", "best")])
def test_the_tested_checkpoint_holds_the_average_and_scores_the_reported_accuracy(backend, weights, tmp_path,
                                                                                  capsys):
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in {**BASE, "test_weights": weights}.items()]
    with pytest.MonkeyPatch.context() as patch:  # a Lightning run would keep TensorFlow out of this process
        patch.setattr(core.frameworks, "without_tensorflow", lambda: None)
        assert train_cli.main(backend, [*argv, "--profile", "false", "--out", str(tmp_path), "--progress",
                                        "none"]) == 0
    run = tmp_path / "cnn-digits" / backend / "version_0"
    results = json.loads((run / "results.json").read_text())
    done = results["test"]["bn_recalibration"]
    assert done["images"] == 200 and done["layers"] == 1 and 0 < done["accuracy_before"] <= 1 and done["seconds"] > 0
    splits = load_splits("digits", seed=BASE["seed"], train_images=BASE["train_images"])
    checkpoint = checkpoint_file(run, backend, weights)
    batches = [splits.train.images[i] for i in recalibration_batches(len(splits.train), 200, 32, BASE["seed"])]
    (mean, var), (means, variances) = _norm_statistics(backend, checkpoint, splits, batches)
    np.testing.assert_allclose(mean, np.mean(means, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, np.mean(variances, axis=0), rtol=1e-4, atol=1e-5)

    network = get_backend(backend).load_network(checkpoint, lambda: None)
    predicted = network.logits(splits.test.images).argmax(axis=1)
    saved = np.load(run / PREDICTIONS_FILE)["probs"].argmax(axis=1)
    assert np.array_equal(predicted, saved)
    assert np.mean(predicted == splits.test.labels) == pytest.approx(results["test"]["accuracy"])
    assert "running statistics recomputed after training from 200 training images in" in (
        run / "report.md").read_text()
    if weights == "last":
        _the_bench_recomputes_as_the_run_did(run, checkpoint, results, capsys)


def _the_bench_recomputes_as_the_run_did(run, checkpoint, results, capsys):
    """bench.bn_statistics from the same 200 images: recomputing again from the run's saved statistics changes
    nothing, so as trained and recomputed both give the run's own test accuracy; the run is left as it was."""
    capsys.readouterr()
    before = checkpoint.stat().st_mtime_ns
    bn_statistics.main([str(run), "--images", "200"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["backend"] == results["backend"] and row["precision"] == "32" and row["layers"] == 1
    assert row["as_trained"] == row["recomputed"] == round(results["test"]["accuracy"] * 100, 2)
    assert checkpoint.stat().st_mtime_ns == before


def test_the_report_says_what_was_recomputed():
    test = {"accuracy": 0.75, "bn_recalibration": {"images": 5120, "layers": 3, "accuracy_before": 0.7,
                                                   "seconds": 4.2}}
    assert recalibration_text(test) == ("; its 3 batch norms' running statistics recomputed after training from "
                                        "5,120 training images in 4.20 s (--bn-recalibration): test accuracy 70.00% "
                                        "before, 75.00% after")
    assert "no batch norm that trains" in recalibration_text({"bn_recalibration": {"images": 0, "layers": 0}})
    assert recalibration_text({"accuracy": 0.5}) == ""


def test_run_lab_gives_every_run_its_recalibration(tmp_path):
    from lab.pipeline import whole_lab
    from lab.pipeline.jobs import build_jobs, run_settings

    args = whole_lab.build_parser().parse_args(["--sections", "1", "--backends", "keras", "--mnist-dataset",
                                                "digits", "--bn-recalibration", "256", "--out", str(tmp_path)])
    lab, _ = whole_lab.make_lab(args)
    seen = [run_settings(lab, job).bn_recalibration for job in build_jobs(lab) if job.experiment is not None]
    assert len(seen) >= 3 and set(seen) == {256}


def _digits_splits(run_dir):
    from lab.config.data import load_data
    from lab.records.rundirs import load_settings

    settings = make_settings(load_settings(run_dir))
    return settings, load_data(settings)


@pytest.mark.distributed
def test_lightning_ddp_recalibrates_on_rank_0_and_saves_the_average(spawn, tmp_path):
    from test_distributed import CNN, only_run, results, run_command

    run_command(spawn, ["train_lightning.py", *CNN, "--batch-norm", "true", "--train-images", "261", "--epochs", "1",
                        "--bn-recalibration", "100", "--devices", "2"], tmp_path)
    run_dir = only_run(tmp_path, "lightning")
    assert results(run_dir)["test"]["bn_recalibration"]["layers"] == 2
    settings, splits = _digits_splits(run_dir)
    batches = [splits.train.images[i] for i in recalibration_batches(len(splits.train), 100, 32, settings.seed)]
    (mean, var), (means, variances) = _norm_statistics("lightning", checkpoint_file(run_dir, "lightning", "last"),
                                                      splits, batches)
    np.testing.assert_allclose(mean, np.mean(means, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(var, np.mean(variances, axis=0), rtol=1e-4, atol=1e-5)


@pytest.mark.distributed
def test_keras_recalibration_on_two_cpu_devices_matches_one(spawn, tmp_path):
    """Under MirroredStrategy the recomputed statistics are one device's: trained alike with synchronised batch norm
    (tests/test_distributed.py), the two checkpoints agree in every weight and moving statistic."""
    from test_distributed import CNN, keras_weights, only_run, results, run_command

    args = ["train_keras.py", *CNN, "--batch-norm", "true", "--sync-batchnorm", "true", "--train-images", "261",
            "--epochs", "1", "--optimizer", "sgd", "--lr", "0.05", "--bn-recalibration", "100"]
    run_command(spawn, [*args, "--devices", "1"], tmp_path / "one")
    run_command(spawn, [*args, "--devices", "2"], tmp_path / "two")
    one, two = only_run(tmp_path / "one", "keras"), only_run(tmp_path / "two", "keras")
    for x, y in zip(keras_weights(one), keras_weights(two)):
        np.testing.assert_allclose(x, y, rtol=0, atol=2e-5)
    first, second = results(one)["test"], results(two)["test"]
    assert first["accuracy"] == second["accuracy"]
    assert first["bn_recalibration"]["accuracy_before"] == second["bn_recalibration"]["accuracy_before"]
