"""A run killed between epochs continues with --resume and ends as an uninterrupted run would.

Only the interrupted run is a process of its own (it is killed); the reference and the resumed run
train in this process.
"""
import json
import subprocess
import time
from pathlib import Path

import pytest

from lab.run import train_cli

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--dataset", "digits", "--model", "mlp", "--hidden", "64", "--epochs", "3", "--batch-size", "8"]
CHECKPOINT = {"lightning": "last.ckpt", "keras": "last-epoch=001.keras"}


def _kill_after_first_epoch(process, run_dir, backend):
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        record = run_dir / "record.json"
        if (run_dir / "checkpoints" / CHECKPOINT[backend]).exists() and record.exists():
            if json.loads(record.read_text())["history"]:
                process.kill()
                process.wait()
                return
        time.sleep(0.02)
    pytest.fail(f"the run did not reach its first checkpoint: {process.stderr.read()[-2000:]}")


@pytest.mark.multiprocess
@pytest.mark.parametrize("backend", ["lightning", "keras"])
def test_killed_run_resumes_and_matches_an_uninterrupted_one(backend, tmp_path, spawn, monkeypatch):
    monkeypatch.chdir(tmp_path)
    interrupted = spawn([ROOT / f"train_{backend}.py", *ARGS, "--out", tmp_path, "--name", "interrupted"],
                        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "interrupted" / backend / "version_0"
    _kill_after_first_epoch(interrupted, run_dir, backend)
    # the reference trains after the kill: two processes training at once on two cores slow each other down
    assert train_cli.main(backend, [*ARGS, "--out", str(tmp_path), "--name", "reference"]) == 0
    assert not (run_dir / "results.json").exists()
    assert train_cli.main(backend, ["--resume", str(run_dir)]) == 0
    expected = json.loads((tmp_path / "reference" / backend / "version_0" / "results.json").read_text())
    got = json.loads((run_dir / "results.json").read_text())
    assert [r["epoch"] for r in got["history"]] == [1, 2, 3]
    assert len(got["timing"]["epoch_s"]) == 3
    for mine, theirs in zip(got["history"], expected["history"]):
        assert mine["val/acc"] == pytest.approx(theirs["val/acc"], abs=1e-6)
        assert mine["train/loss"] == pytest.approx(theirs["train/loss"], rel=1e-4)
    assert got["test"]["accuracy"] == pytest.approx(expected["test"]["accuracy"], abs=1e-6)
    assert got["test"]["loss"] == pytest.approx(expected["test"]["loss"], rel=1e-4)
    assert not list((tmp_path / "interrupted" / backend).glob("version_1"))
