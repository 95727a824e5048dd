"""Both backends train the lab's models end to end and leave the same outputs."""
import contextlib
import io

import numpy as np
import pytest

from lab.config.settings import make_settings
from lab.records.recording import EPOCH_TAGS
from lab.records.results import REQUIRED_FIELDS, load_results
from lab.run.runner import run_settings
from lab.run.train_cli import main

BACKENDS = ["lightning", "keras"]


def _run(backend, tmp_path, **kw):
    settings = make_settings({"dataset": "digits", "epochs": 2, "out": str(tmp_path), "seed": 0, **kw})
    run_dir = run_settings(backend, settings)
    return run_dir, load_results(run_dir)


@pytest.fixture(scope="module")
def cnn_runs(tmp_path_factory) -> dict:
    """first_cnn, 2 epochs on digits, trained once per backend through the command line; shared by the
    tests below, each checking another part of what a run leaves. backend -> (run folder, its stdout)."""
    out = tmp_path_factory.mktemp("runs")
    runs = {}
    for backend in BACKENDS:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(backend, ["--dataset", "digits", "--model", "first_cnn", "--epochs", "2", "--out", str(out)])
        assert code == 0
        runs[backend] = (out / "first_cnn-digits" / backend / "version_0", printed.getvalue())
    return runs


@pytest.mark.parametrize("backend", BACKENDS)
def test_trains_on_digits_and_beats_chance(backend, cnn_runs):
    run_dir, printed = cnn_runs[backend]
    results = load_results(run_dir)
    assert results["test"]["accuracy"] > 0.5  # chance is 0.1
    assert set(REQUIRED_FIELDS) <= set(results)
    assert results["backend"] == backend and results["model"] == "first_cnn"
    assert results["epochs_run"] == 2 and [r["epoch"] for r in results["history"]] == [1, 2]
    assert results["test"]["weights"] == "last" and results["test"]["weights_epoch"] == 2  # the default
    assert "- Tested weights: the last epoch's (epoch 2)" in (run_dir / "report.md").read_text()
    assert results["timing"]["total_s"] == pytest.approx(sum(results["timing"]["epoch_s"]), abs=0.01)
    assert results["timing"]["images_per_s"] > 0
    assert results["hyperparameters"]["batch_size"] == 32
    assert results["params"]["total"] > 0
    assert results["machine"]["versions"]["python"]
    for name in ("report.md", "predictions.npz", "figures/curves.png", "figures/confusion_matrix.png"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "checkpoints").iterdir())
    assert f"report: {run_dir / 'report.md'}" in printed and "test accuracy" in printed


def test_parameter_counts_equal_in_real_runs(cnn_runs):
    counts = {b: load_results(run_dir)["params"] for b, (run_dir, _) in cnn_runs.items()}
    assert counts["lightning"] == counts["keras"]


def test_flops_per_image_equal_in_real_runs(cnn_runs):
    """One FLOP count for both backends: the spec's, as the run report and the summary print it."""
    from lab.specs.architectures import forward_flops
    from lab.specs.models import model_spec

    results = {b: load_results(run_dir) for b, (run_dir, _) in cnn_runs.items()}
    spec = model_spec(make_settings({"model": "first_cnn"}), (8, 8, 1), 10)  # digits: 8x8 grey images
    flops = {backend: r["flops_per_image"] for backend, r in results.items()}
    assert flops["lightning"] == flops["keras"] == forward_flops(spec, (8, 8, 1))
    for run_dir, printed in cnn_runs.values():
        assert "- FLOPs per image: " in (run_dir / "report.md").read_text()
        assert "GFLOP/s achieved" in (run_dir / "report.md").read_text() and " GFLOP/s)" in printed


def _events(run_dir):
    """{tag: (plugin, [steps])} over every event file of the run."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    found = {}
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                plugin, steps = found.setdefault(value.tag, (value.metadata.plugin_data.plugin_name, []))
                steps.append(event.step)
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_tensorboard_holds_the_shared_tags_per_epoch(backend, cnn_runs):
    events = _events(cnn_runs[backend][0])
    for tag in EPOCH_TAGS:
        assert events[tag][1] == [1, 2], (tag, sorted(events))
    for figure in ("figures/curves", "figures/confusion_matrix"):
        assert events[figure][0] == "images"
    assert events["_hparams_/session_start_info"][0] == "hparams"
    assert events["hp/test_acc"][0] == "scalars"


@pytest.mark.parametrize("backend", BACKENDS)
def test_mlp_beats_chance_and_the_same_seed_gives_the_same_metrics(backend, tmp_path):
    """Training alone (no report), the MLP: it beats chance, and the same seed gives the same history and the
    same test logits."""
    from datamodules import load_splits
    from lab.reports.metrics import accuracy
    from lab.run.backend import get_backend

    settings = make_settings({"dataset": "digits", "model": "mlp", "epochs": 2, "seed": 0})
    splits, trainer = load_splits("digits"), get_backend(backend)
    first, second = (trainer.train(settings, splits, tmp_path / name, trainer.plan_devices(settings))
                     for name in ("a", "b"))
    assert accuracy(first.test_logits, splits.test.labels) > 0.5  # chance is 0.1
    assert np.array_equal(first.test_logits, second.test_logits)
    strip = lambda h: [{k: v for k, v in row.items() if k != "time/epoch_s"} for row in h]  # noqa: E731
    assert strip(first.record.history) == strip(second.record.history) and len(first.record.history) == 2


def test_yaml_config_is_read_by_both_backends(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("dataset: digits\nmodel: mlp\nhidden: 8\nepochs: 1\nbatch-size: 64\nname: yaml\n")
    for backend in BACKENDS:
        assert main(backend, ["--config", str(config), "--out", str(tmp_path)]) == 0
        results = load_results(tmp_path / "yaml" / backend / "version_0")
        assert results["hyperparameters"]["hidden"] == 8 and results["hyperparameters"]["batch_size"] == 64
    sizes = {b: load_results(tmp_path / "yaml" / b / "version_0")["params"]["total"] for b in BACKENDS}
    assert sizes["keras"] == sizes["lightning"] == 64 * 8 + 8 + 8 * 10 + 10


def test_compare_two_real_runs_one_per_backend(cnn_runs, tmp_path):
    import csv

    from lab.reports.comparison import compare_runs

    out = compare_runs([run_dir for run_dir, _ in cnn_runs.values()], tmp_path / "comparison")
    rows = list(csv.DictReader(out["csv"].open()))
    assert sorted(r["Backend"] for r in rows) == sorted(BACKENDS)
    for row in rows:
        accuracy = load_results(cnn_runs[row["Backend"]][0])["test"]["accuracy"]
        assert float(row["Accuracy (%)"]) == pytest.approx(100 * accuracy, abs=0.01)
    assert "| first_cnn | keras |" in out["markdown"].read_text()
    assert out["curves"].stat().st_size > 10_000


def test_each_backend_is_a_plain_import_and_lightning_alone_loads_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys\n"
            "from lab.run.backend import get_backend\n"
            "from lightning_modules import BACKEND\n"
            "assert BACKEND is get_backend('lightning') and BACKEND.name == 'lightning'\n"
            "assert 'tensorflow' not in sys.modules and 'keras_models.training' not in sys.modules\n"
            "from keras_models import BACKEND\n"
            "assert BACKEND is get_backend('keras') and 'tensorflow' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]



def test_lightning_s_advert_for_a_paid_logger_is_not_shown(caplog):
    import logging

    from pytorch_lightning.utilities.rank_zero import rank_zero_info

    import lightning_modules.training  # noqa: F401  (filters Lightning's log)

    with caplog.at_level(logging.INFO):
        rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        rank_zero_info("GPU available: False, used: False")
    assert "seamless" not in caplog.text and "GPU available" in caplog.text
