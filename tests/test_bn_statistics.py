"""bench.bn_statistics: a finished run scored as trained and with its batch norms recomputed by --bn-recalibration's
code, on both backends, leaving the run as it was."""
from __future__ import annotations

import json

import pytest

import core.frameworks
from bench import bn_statistics
from lab.records.checkpoint_files import checkpoint_file
from lab.run import train_cli


@pytest.mark.parametrize("backend", ["lightning", "keras"])
def test_the_command_recomputes_as_the_runs_own_recalibration_did(backend, tmp_path, capsys):
    """The run recalibrated itself from the same 64 images: recomputing again from its saved statistics changes
    nothing, so as trained and recomputed both give the run's own test accuracy."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(core.frameworks, "without_tensorflow", lambda: None)
        assert train_cli.main(backend, ["--dataset", "digits", "--model", "cifar_cnn", "--width", "4", "--depth",
                                        "1", "--epochs", "1", "--train-images", "100", "--profile", "false",
                                        "--bn-recalibration", "64", "--out", str(tmp_path), "--progress",
                                        "none"]) == 0
    capsys.readouterr()
    run = tmp_path / "cifar_cnn-digits" / backend / "version_0"
    results = json.loads((run / "results.json").read_text())
    checkpoint = checkpoint_file(run, backend, "last")
    before = checkpoint.stat().st_mtime_ns
    bn_statistics.main([str(run), "--images", "64"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["backend"] == backend and row["precision"] == "32"
    assert row["layers"] == results["test"]["bn_recalibration"]["layers"] == 3  # two in the block, one in the head
    assert row["as_trained"] == row["recomputed"] == round(results["test"]["accuracy"] * 100, 2)
    assert checkpoint.stat().st_mtime_ns == before  # the bench writes nothing to the run
