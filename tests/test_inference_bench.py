"""bench.inference end to end on a tiny digits run: each way in a fresh process, its table and the ONNX Runtime
comparison; the ONNX file is written here with torch.onnx.export as export.py would write it (uint8 `images`,
dynamic batch, `logits`), so that the test does not depend on export.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import inference as bench
from bench.common import REPO

pytestmark = pytest.mark.multiprocess


@pytest.fixture(scope="module")
def lightning_run(tmp_path_factory) -> Path:
    from lab.config.settings import make_settings
    from lab.run.runner import run_settings

    out = tmp_path_factory.mktemp("runs")
    settings = make_settings({"dataset": "digits", "model": "mlp", "hidden": 8, "epochs": 1, "train_images": 64,
                              "out": str(out), "profile": False})
    return run_settings("lightning", settings)


def test_a_run_with_profile_false_has_no_inference_speed(lightning_run):
    from lab.records.results import load_results

    results = load_results(lightning_run)
    assert "inference" not in results and "inference_skipped" not in results
    assert "- Inference: not measured (--profile false)" in (lightning_run / "report.md").read_text()


def _export_onnx(run_dir: Path) -> None:
    import torch

    from lightning_modules.training import load_classifier

    module = load_classifier(run_dir / "checkpoints" / "last.ckpt", lambda: {})
    path = run_dir / bench.ONNX_FILE
    path.parent.mkdir(parents=True)
    torch.onnx.export(module.net, (torch.zeros((2, 8, 8, 1), dtype=torch.uint8),), str(path), dynamo=False,
                      input_names=["images"], output_names=["logits"], opset_version=18,
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})


def test_the_bench_times_torch_and_onnx_runtime_each_in_a_fresh_process(lightning_run, capsys):
    _export_onnx(lightning_run)
    bench.main(["--run-dir", str(lightning_run), "--ways", "torch,onnx", "--rounds", "1", "--calls", "5",
                "--warmup", "2", "--threads", "1"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| `mlp` | lightning |")]
    assert [row.split(" | ")[2] for row in rows] == ["torch, inference_mode", "ONNX Runtime"]
    assert all(float(row.split(" | ")[3]) > 0 for row in rows)
    assert "mlp/lightning: ONNX Runtime against torch, inference_mode: batch 1 " in out


def test_the_onnx_runtime_way_imports_neither_torch_nor_tensorflow(lightning_run, tmp_path):
    if not (lightning_run / bench.ONNX_FILE).is_file():
        _export_onnx(lightning_run)
    import numpy as np

    np.save(tmp_path / "images.npy", np.zeros((3, 8, 8, 1), np.uint8))
    argv = ["--way", "onnx", "--run-dir", str(lightning_run), "--images", str(tmp_path / "images.npy"), "--threads",
            "1", "--calls", "3", "--warmup", "1", "--result", str(tmp_path / "r.json")]
    code = (f"import sys; from bench.inference import main; main({argv!r}); "
            "print(sorted({'torch', 'tensorflow'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          start_new_session=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert json.loads((tmp_path / "r.json").read_text())["calls_b1"] == 3


def test_without_export_py_the_onnx_ways_are_left_out_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "REPO", tmp_path)  # a tree without export.py
    why = bench.export_onnx(tmp_path / "run", tmp_path / "export.log")
    assert why.startswith("export.py is not in this tree yet") and "\n" not in why


@pytest.mark.slow  # TensorFlow in two fresh processes: about 30 s on two shared cores
def test_the_bench_times_both_keras_ways(tmp_path, capsys):
    from lab.config.settings import make_settings
    from lab.run.runner import run_settings

    settings = make_settings({"dataset": "digits", "model": "mlp", "hidden": 8, "epochs": 1, "train_images": 64,
                              "out": str(tmp_path), "profile": False})
    run_dir = run_settings("keras", settings)
    bench.main(["--run-dir", str(run_dir), "--ways", "keras-call,keras-predict", "--rounds", "1", "--calls", "5",
                "--warmup", "2", "--threads", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `mlp` | keras |")]
    assert [row.split(" | ")[2] for row in rows] == ["model(x, training=False)", "model.predict"]
