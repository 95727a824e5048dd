"""The keras-tuner search on both backends: one space, trials as lab runs, resume, CSV, bad input."""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import tune_lightning
from conftest import call_main
from core.errors import LabError
from keras_models.components.network import count_params as keras_params
from keras_models.training import build_model as keras_model
from lab.config.settings import make_settings
from lab.records.recording import EPOCH_TAGS
from lab.specs.architectures import infer
from lab.specs.models import model_spec
from lab.tuning.engine import make_oracle
from lab.tuning.search import SearchOptions, run_search
from lab.tuning.space import Constraint, SearchSpace, define, overrides_of, parse_space, trial_settings
from lab.tuning.trials import METRICS, trial_metrics
from lightning_modules.components import count_params as torch_params
from lightning_modules.training import build_model as lightning_model
from tune_keras import main

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["lightning", "keras"]
SMALL = SearchSpace(blocks=(1, 2), filters=(8, 16), dense_units=(16, 32), batch_size=(64, 128))
SMALL_FLAGS = ["--blocks", "1-2", "--filters", "8,16", "--dense-units", "16,32", "--batch-size", "64,128"]


def _search(tmp_path, backend, **kw):
    base = make_settings({"dataset": "digits", "out": str(tmp_path / "runs"), "name": kw.pop("name", "t")})
    opts = SearchOptions(**{"backend": backend, "max_trials": 2, "max_epochs": 2, "space": SMALL,
                            "retrain": False, **kw})
    return run_search(base, opts)


def _csv(folder: Path) -> list[dict]:
    with open(folder / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def _digits():
    from datamodules import load_splits

    return load_splits("digits")


def _sampled_configs(space: SearchSpace, constraint: Constraint, count: int) -> list[dict]:
    oracle = make_oracle("random", constraint, max_trials=count, max_epochs=2, seed=0)
    hp = oracle.get_space()
    define(hp, space)
    oracle.update_space(hp)
    return [oracle.populate_space(str(i))["values"] for i in range(count)]


def test_a_trial_builds_the_same_model_on_both_backends():
    splits = _digits()
    constraint = Constraint(splits.input_shape, splits.num_classes)
    for values in _sampled_configs(SearchSpace(), constraint, 6):
        settings = trial_settings(make_settings({}), overrides_of(values))
        expected = infer(model_spec(settings, splits.input_shape, splits.num_classes), splits.input_shape)[1]
        assert torch_params(lightning_model(settings, splits).net) == expected, values
        assert keras_params(keras_model(settings, splits)) == expected, values


def test_the_oracle_proposes_only_models_that_fit_the_input():
    space = SearchSpace(blocks=(1, 4), kernel_size=(3, 5), padding=("valid", "same"), pool=(True,))
    constraint = Constraint((8, 8, 1), 10)
    unbuildable = {**{n: getattr(space, n)[0] for n in ("filters", "dropout", "dense_units", "optimizer", "lr",
                                                        "batch_size", "batch_norm", "pool")},
                   "blocks": 3, "kernel_size": 5, "padding": "valid"}
    assert "larger than the 2x2 input" in constraint.problem(unbuildable)
    configs = _sampled_configs(space, constraint, 25)
    assert all(constraint.fits(values) for values in configs)
    assert {v["blocks"] for v in configs} == {1, 2, 3}  # 4 pooled blocks never fit 8x8


def test_a_space_without_one_buildable_model_is_refused():
    space = SearchSpace(blocks=(4, 5), padding=("valid",), kernel_size=(5,), pool=(True,))
    with pytest.raises(LabError, match="no configuration of the search space builds a model for 8x8"):
        Constraint((8, 8, 1), 10).check_space(space)


def test_ranges_and_lists_from_flags():
    space = parse_space({"blocks": "2-4", "filters": "16, 32,16", "batch_norm": "true", "lr": "1e-3,0.01"})
    assert space.blocks == (2, 4) and space.filters == (16, 32) and space.batch_norm == (True,)
    assert space.lr == (1e-3, 0.01) and space.padding == SearchSpace().padding
    assert parse_space({"blocks": "3"}).blocks == (3, 3)
    for given, message in [({"blocks": "3-1"}, "empty range"), ({"filters": ","}, "--filters is empty"),
                           ({"padding": "full"}, "--padding full"), ({"dropout": "0.2,1.5"}, "dropout must be"),
                           ({"blocks": "a-b"}, "MIN-MAX"), ({"blocks": "0-2"}, "blocks must be at least 1")]:
        with pytest.raises(LabError, match=message):
            parse_space(given)


def test_trial_metrics_count_only_the_trials_own_epochs():
    rows = [{"epoch": e, "val/acc": acc, "val/loss": 1 - acc, "time/epoch_s": 1.5}
            for e, acc in [(1, 0.5), (2, 0.9), (3, 0.8), (4, 0.85)]]
    assert trial_metrics(rows, 0, 10) == {"val_acc": 0.9, "val_loss": pytest.approx(0.1), "best_epoch": 2,
                                          "epochs_run": 4, "time_s": 6.0, "params": 10}
    continued = trial_metrics(rows, 2, 10)  # a Hyperband continuation of a 2-epoch parent
    assert (continued["val_acc"], continued["best_epoch"], continued["epochs_run"]) == (0.85, 4, 2)


def _tags(run_dir: Path) -> set[str]:
    """Scalar tags (tensors, when Keras writes them) and the HParams plugin's tags."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return set(acc.Tags()["scalars"]) | set(acc.Tags()["tensors"]) | set(acc.PluginTagToContent("hparams"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_trial_search_writes_every_trial(backend, tmp_path):
    outcome = _search(tmp_path, backend)
    folder = tmp_path / "runs" / "t" / backend / "tuning"
    assert outcome.folder == folder and outcome.trials_run == 2
    rows = _csv(folder)
    assert [r["trial"] for r in rows] == ["0", "1"] and {r["backend"] for r in rows} == {backend}
    assert {r["status"] for r in rows} == {"COMPLETED"}
    for row in rows:
        saved = json.loads((folder / f"trial_{row['trial']}" / "trial.json").read_text())["hyperparameters"]["values"]
        assert {k: row[k] for k in saved} == {k: str(v) for k, v in saved.items()}  # every hyperparameter
        settings = trial_settings(make_settings({}), overrides_of(saved))
        assert int(row["params"]) == infer(model_spec(settings, (8, 8, 1), 10), (8, 8, 1))[1].total
        history = json.loads((folder / f"trial_{row['trial']}" / "record.json").read_text())["history"]
        assert int(row["epochs_run"]) == len(history) == 2
        assert float(row["val_acc"]) == max(h["val/acc"] for h in history)
        assert float(row["time_s"]) > 0 and all(m in row for m in METRICS)
        tags = _tags(folder / f"trial_{row['trial']}")
        assert set(EPOCH_TAGS) <= tags, tags
        assert {"_hparams_/session_start_info", "hp/val_acc"} <= tags  # the HParams tab
    assert "## The 2 best trials" in (folder / "summary.md").read_text()


def test_trials_train_on_at_most_max_trial_images(tmp_path, monkeypatch):
    import lab.tuning.search as search

    counts = []
    sample = search.sample_train
    monkeypatch.setattr(search, "sample_train", lambda splits, n, seed: counts.append(n) or sample(splits, n, seed))
    outcome = _search(tmp_path, "lightning", max_trials=1, max_epochs=1, trial_fraction=0.5, max_trial_images=100)
    assert counts == [100]  # not half of the digits' training images
    assert "50% of the training images (at most 100)" in (outcome.folder / "summary.md").read_text()


# The engine is one for both backends; what a Keras trial writes is checked above, so the Keras runs of
# the engine's behaviours below are among the slow checks.
BOTH_SLOW_KERAS = ["lightning", pytest.param("keras", marks=pytest.mark.slow)]


@pytest.mark.parametrize("backend", BOTH_SLOW_KERAS)
def test_a_resumed_search_runs_only_the_new_trials(backend, tmp_path, capsys):
    assert _search(tmp_path, backend, max_trials=1).trials_run == 1
    first = tmp_path / "runs" / "t" / backend / "tuning" / "trial_0" / "record.json"
    written = first.stat().st_mtime_ns
    assert _search(tmp_path, backend, max_trials=2).trials_run == 1
    assert first.stat().st_mtime_ns == written
    capsys.readouterr()
    again = _search(tmp_path, backend, max_trials=2)
    assert again.trials_run == 0 and len(again.rows) == 2
    assert "had already finished (2 trials)" in capsys.readouterr().out
    assert _search(tmp_path, backend, max_trials=2, overwrite=True).trials_run == 2


@pytest.mark.parametrize("backend", BOTH_SLOW_KERAS)
def test_hyperband_continues_a_trial_for_its_epoch_budget(backend, tmp_path):
    _search(tmp_path, backend, tuner="hyperband", max_trials=4, max_epochs=3)
    folder = tmp_path / "runs" / "t" / backend / "tuning"
    continued = [r for r in _csv(folder) if r["tuner/trial_id"]]
    assert continued, "hyperband promoted no trial"
    for row in continued:
        start, end = int(row["tuner/initial_epoch"]), int(row["tuner/epochs"])
        history = json.loads((folder / f"trial_{row['trial']}" / "record.json").read_text())["history"]
        assert [h["epoch"] for h in history] == list(range(1, end + 1))
        assert int(row["epochs_run"]) == end - start
        parent = json.loads((folder / f"trial_{row['tuner/trial_id']}" / "record.json").read_text())["history"]
        assert history[:start] == parent[:start]  # continued from the parent's checkpoint, not retrained


def test_a_time_budget_stops_the_search_and_the_next_call_continues(tmp_path, capsys):
    # Keras: its trial takes seconds, surely longer than the 0.6 s budget (a Lightning trial may not)
    stopped = _search(tmp_path, "keras", max_trials=2, max_epochs=1, time_budget=0.01)
    assert stopped.trials_run == 1
    assert "The time budget of 0.01 min is spent" in capsys.readouterr().out
    assert _search(tmp_path, "keras", max_trials=2, max_epochs=1).trials_run == 1


def test_the_best_is_retrained_and_compared_with_first_cnn(tmp_path, capsys):
    outcome = _search(tmp_path, "lightning", max_trials=1, max_epochs=1, retrain=True)
    results = json.loads((outcome.best_run / "results.json").read_text())
    assert results["model"] == "cnn" and results["experiment"] == "t-best"
    best = {k: v for k, v in outcome.rows[0].items() if k in SMALL.to_dict()}
    assert {k: results["hyperparameters"][k] for k in best} == best
    assert json.loads((outcome.baseline_run / "results.json").read_text())["model"] == "first_cnn"
    table = outcome.comparison.read_text()
    assert "t-best" in table and "t-first_cnn" in table
    assert "## Retrained" in (outcome.folder / "summary.md").read_text()
    again = _search(tmp_path, "lightning", max_trials=1, max_epochs=1, retrain=True)
    assert (again.best_run, again.baseline_run) == (outcome.best_run, outcome.baseline_run)
    assert "already trained" in capsys.readouterr().out


def test_another_search_in_the_same_folder_is_refused(tmp_path, capsys):
    _search(tmp_path, "lightning", max_trials=1, max_epochs=1)
    code = main(["--dataset", "digits", "--backend", "lightning", "--tuner", "bayesian", "--max-trials", "1",
                 "--max-epochs", "1",
                 "--out", str(tmp_path / "runs"), "--name", "t", "--no-retrain", *SMALL_FLAGS])
    err = capsys.readouterr().err
    assert code == 2 and "holds a search with other settings (tuner \"random\" there, \"bayesian\" now)" in err


@pytest.mark.multiprocess
def _started(folder) -> list[str]:
    try:
        return json.loads((folder / "oracle.json").read_text())["start_order"]
    except (OSError, ValueError, KeyError):
        return []


def test_a_killed_search_continues_without_rerunning_finished_trials(tmp_path, spawn, capsys):
    args = ["--dataset", "digits", "--max-trials", "2", "--max-epochs", "2", "--out", str(tmp_path / "runs"),
            "--name", "k", "--no-retrain", *SMALL_FLAGS]
    folder = tmp_path / "runs" / "k" / "lightning" / "tuning"
    process = spawn([ROOT / "tune_lightning.py", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    # trial 0 ended, trial 1 began: in the saved oracle, not only trial_1/trial.json, which keras-tuner writes first
    while "1" not in _started(folder):
        assert time.time() < deadline and process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert [r["trial"] for r in _csv(folder)] == ["0"]
    finished = (folder / "trial_0" / "record.json").stat().st_mtime_ns
    code, out, err = call_main(tune_lightning.main, args, capsys)  # continued in this process
    assert code == 0 and re.search(r"Search finished: 1 trial\(s\) run now in [\d.]+ min, 2 in all", out), err[-2000:]
    assert (folder / "trial_0" / "record.json").stat().st_mtime_ns == finished
    assert [(r["trial"], r["status"]) for r in _csv(folder)] == [("0", "COMPLETED"), ("1", "COMPLETED")]


@pytest.mark.parametrize("kind", ["random", "hyperband", "bayesian"])
def test_a_kill_while_the_oracle_saves_leaves_the_last_state_readable(tmp_path, monkeypatch, kind):
    oracle = make_oracle(kind, Constraint((8, 8, 1), 10, None), 3, 2, seed=0)
    oracle._set_project_dir(str(tmp_path), "p")
    oracle.save()
    saved = (tmp_path / "p" / "oracle.json").read_text()
    oracle.max_trials = 99

    def killed(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", killed)  # the new state is written, not yet in place
    with pytest.raises(KeyboardInterrupt):
        oracle.save()
    assert (tmp_path / "p" / "oracle.json").read_text() == saved
    assert [f.name for f in (tmp_path / "p").iterdir()] == ["oracle.json"]


@pytest.mark.parametrize("args, message", [
    (["--max-trials", "0"], "max-trials must be at least 1, got 0"),
    (["--tuner", "grid"], "invalid choice: 'grid'"),
    (["--blocks", "3-1"], "--blocks 3-1 is an empty range"),
    (["--filters", ""], "--filters is empty"),
    (["--padding", "same,full"], "--padding full"),
    (["--blocks", "4-5", "--padding", "valid", "--kernel-size", "5", "--pool", "true"],
     "no configuration of the search space builds a model for 8x8 images"),
    (["--max-epochs", "-1"], "max-epochs must be at least 1"),
    (["--time-budget", "0"], "time-budget must be a positive number of minutes"),
    (["--trial-fraction", "1.5"], "trial-fraction must be in (0, 1]"),
    (["--dataset", "imagenet"], "invalid choice: 'imagenet'"),
])
def test_bad_input_is_one_error_line_and_exit_2(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = call_main(main, ["--dataset", "digits", *args, "--out", str(tmp_path / "runs")], capsys)
    assert code == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err[-2000:]
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()
