"""Both backends train the lab's models end to end and leave the same outputs."""

import pytest

from lab.config.settings import make_settings
from lab.records.recording import EPOCH_TAGS
from lab.records.results import REQUIRED_FIELDS, load_results
from lab.run.runner import main, run_settings

BACKENDS = ["lightning", "keras"]


def _run(backend, tmp_path, **kw):
    settings = make_settings({"dataset": "digits", "epochs": 2, "out": str(tmp_path), "seed": 0, **kw})
    run_dir = run_settings(backend, settings)
    return run_dir, load_results(run_dir)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", ["first_cnn", "mlp"])
def test_trains_on_digits_and_beats_chance(backend, model, tmp_path):
    run_dir, results = _run(backend, tmp_path, model=model)
    assert results["test"]["accuracy"] > 0.5  # chance is 0.1
    assert set(REQUIRED_FIELDS) <= set(results)
    assert results["backend"] == backend and results["model"] == model
    assert results["epochs_run"] == 2 and [r["epoch"] for r in results["history"]] == [1, 2]
    assert results["timing"]["total_s"] == pytest.approx(sum(results["timing"]["epoch_s"]), abs=0.01)
    assert results["timing"]["images_per_s"] > 0
    assert results["hyperparameters"]["batch_size"] == 32
    assert results["params"]["total"] > 0
    assert results["machine"]["versions"]["python"]
    assert run_dir == tmp_path / f"{model}-digits" / backend / "version_0"
    for name in ("report.md", "predictions.npz", "figures/curves.png", "figures/confusion_matrix.png"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "checkpoints").iterdir())


def test_parameter_counts_equal_in_real_runs(tmp_path):
    counts = {b: _run(b, tmp_path, epochs=1)[1]["params"] for b in BACKENDS}
    assert counts["lightning"] == counts["keras"]


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
def test_tensorboard_holds_the_shared_tags_per_epoch(backend, tmp_path):
    run_dir, _ = _run(backend, tmp_path)
    events = _events(run_dir)
    for tag in EPOCH_TAGS:
        assert events[tag][1] == [1, 2], (tag, sorted(events))
    for figure in ("figures/curves", "figures/confusion_matrix"):
        assert events[figure][0] == "images"
    assert events["_hparams_/session_start_info"][0] == "hparams"
    assert events["hp/test_acc"][0] == "scalars"


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_metrics(backend, tmp_path):
    first = _run(backend, tmp_path / "a", epochs=1)[1]
    second = _run(backend, tmp_path / "b", epochs=1)[1]
    assert first["test"] == second["test"]
    strip = lambda h: [{k: v for k, v in row.items() if k != "time/epoch_s"} for row in h]  # noqa: E731
    assert strip(first["history"]) == strip(second["history"])


def test_cli_end_to_end(tmp_path, capsys):
    for backend in BACKENDS:
        code = main(backend, ["--dataset", "digits", "--epochs", "1", "--model", "mlp", "--hidden", "16",
                              "--out", str(tmp_path), "--name", "cli"])
        assert code == 0
    out = capsys.readouterr().out
    assert "report:" in out and "test accuracy" in out
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == ["keras", "lightning"]


def test_yaml_config_is_read_by_both_backends(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("dataset: digits\nmodel: mlp\nhidden: 8\nepochs: 1\nbatch-size: 64\nname: yaml\n")
    for backend in BACKENDS:
        assert main(backend, ["--config", str(config), "--out", str(tmp_path)]) == 0
        results = load_results(tmp_path / "yaml" / backend / "version_0")
        assert results["hyperparameters"]["hidden"] == 8 and results["hyperparameters"]["batch_size"] == 64
    sizes = {b: load_results(tmp_path / "yaml" / b / "version_0")["params"]["total"] for b in BACKENDS}
    assert sizes["keras"] == sizes["lightning"] == 64 * 8 + 8 + 8 * 10 + 10


def test_compare_two_real_runs_one_per_backend(tmp_path):
    import csv

    from lab.reports.comparison import compare_runs

    accuracies = {}
    for backend in BACKENDS:
        run_dir, results = _run(backend, tmp_path, epochs=1, model="mlp", hidden=16, name="pair")
        accuracies[backend] = results["test"]["accuracy"]
    out = compare_runs([tmp_path / "pair"], tmp_path / "comparison")
    rows = list(csv.DictReader(out["csv"].open()))
    assert sorted(r["Backend"] for r in rows) == sorted(BACKENDS)
    for row in rows:
        assert float(row["Accuracy (%)"]) == pytest.approx(100 * accuracies[row["Backend"]], abs=0.01)
    assert "| mlp | keras |" in out["markdown"].read_text()
    assert out["curves"].stat().st_size > 10_000
