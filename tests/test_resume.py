"""A run killed between epochs continues with --resume and ends as an uninterrupted run would."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--dataset", "digits", "--model", "mlp", "--hidden", "64", "--epochs", "3", "--batch-size", "8"]
CHECKPOINT = {"lightning": "last.ckpt", "keras": "last-epoch=001.keras"}


def _start(backend, out, name, *extra):
    return subprocess.Popen([sys.executable, str(ROOT / f"train_{backend}.py"), *ARGS, "--out", str(out),
                             "--name", name, *extra], cwd=out, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _kill_after_first_epoch(process, run_dir, backend):
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        record = run_dir / "record.json"
        if (run_dir / "checkpoints" / CHECKPOINT[backend]).exists() and record.exists():
            if json.loads(record.read_text())["history"]:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return
        time.sleep(0.02)
    pytest.fail(f"the run did not reach its first checkpoint: {process.stderr.read()[-2000:]}")


@pytest.mark.parametrize("backend", ["lightning", "keras"])
def test_killed_run_resumes_and_matches_an_uninterrupted_one(backend, tmp_path):
    reference = _start(backend, tmp_path, "reference")
    interrupted = _start(backend, tmp_path, "interrupted")
    run_dir = tmp_path / "interrupted" / backend / "version_0"
    _kill_after_first_epoch(interrupted, run_dir, backend)
    assert not (run_dir / "results.json").exists()
    resumed = subprocess.run([sys.executable, str(ROOT / f"train_{backend}.py"), "--resume", str(run_dir)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert reference.wait(timeout=300) == 0
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
