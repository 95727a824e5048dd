"""--precision on the CPU: a mixed-precision Keras run computes in its policy's dtype during fit; bf16-mixed runs on
both backends where the CPU has bfloat16 units (core.cpu_bf16), records its precision, starts from the loss of
float32 and leaves float32 checkpoints that a float32 run resumes; without those units it is refused."""
import json

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

import core.frameworks
import train_keras
import train_lightning
from conftest import call_main
from core import cpu_bf16
from core.frameworks import keras
from keras_models import training as keras_training
from lab.config.data import load_data
from lab.config.settings import make_settings
from lab.records.rundirs import CHECKPOINTS_DIR
from lab.reports.report import REPORT_FILE
from lab.run.backend import get_backend
from lab.run.runner import finish
from lightning_modules import training as lightning_training

needs_bf16 = pytest.mark.skipif(not cpu_bf16.cpu_has_bf16(), reason="this CPU has no bfloat16 units")
# The first batch's loss in bf16-mixed against float32, same weights and batch, measured here (first CNN, digits,
# AMD EPYC with AVX512-BF16): 0.002% apart on Lightning, 0.022% on Keras. bf16 keeps 8 bits of mantissa (0.4% per
# rounding), and the errors of a batch's many roundings mostly cancel in its mean loss; 0.5% is 20x the larger.
FIRST_LOSS_RTOL = 0.005
TRAINERS = {"lightning": lightning_training, "keras": keras_training}
BASE = {"dataset": "digits", "model": "first_cnn", "train_images": 200, "batch_size": 32, "seed": 0,
        "accelerator": "cpu", "profile": False}


class ComputeDtypes(keras.callbacks.Callback):
    """The compute dtypes of the model's layers, read at the first training batch."""

    def __init__(self):
        super().__init__()
        self.seen = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.seen is None:
            self.seen = {layer.name: layer.compute_dtype for layer in self.model.layers}


@pytest.fixture
def float32_after():
    yield
    keras.mixed_precision.set_global_policy("float32")  # leave the process as the other tests expect it


class FirstLossLightning(pl.Callback):
    def __init__(self):
        self.loss, self.autocast = None, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.loss is None:
            self.loss = float(outputs["loss"])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.autocast is None:
            with trainer.precision_plugin.forward_context():
                self.autocast = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu")


class FirstLossKeras(ComputeDtypes):
    def __init__(self):
        super().__init__()
        self.loss = None

    def on_train_batch_end(self, batch, logs=None):
        if self.loss is None:
            self.loss = float(logs["loss"])


def _train(backend: str, run_dir, precision: str, epochs: int = 1, resume: bool = False, finished: bool = False):
    """(Trained, or with `finished` the results the runner writes, and the probe) of a run of BASE."""
    settings = make_settings({**BASE, "precision": precision, "epochs": epochs, "out": str(run_dir)})
    splits, trainer = load_data(settings), get_backend(backend)
    probe = FirstLossLightning() if backend == "lightning" else FirstLossKeras()
    plan = trainer.plan_devices(settings)
    outcome = TRAINERS[backend].train(settings, splits, run_dir, plan, resume, callbacks=(probe,))
    return (finish(trainer, settings, splits, run_dir, outcome) if finished else outcome), probe


def _checkpoint_dtypes(backend: str, run_dir) -> set[str]:
    checkpoints = run_dir / CHECKPOINTS_DIR
    if backend == "lightning":
        state = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
        return {str(t.dtype).removeprefix("torch.") for t in state.values() if t.is_floating_point()}
    saved = keras.models.load_model(sorted(checkpoints.glob("last-*.keras"))[-1], compile=False)
    return {w.dtype for w in saved.weights}


@needs_bf16
@pytest.mark.parametrize("backend", ["lightning", "keras"])
def test_bf16_on_the_cpu_trains_records_and_resumes_in_float32(backend, tmp_path, float32_after):
    bf16_dir, fp32_dir = tmp_path / "bf16", tmp_path / "fp32"
    results, bf16 = _train(backend, bf16_dir, "bf16-mixed", finished=True)
    assert results["hyperparameters"]["precision"] == "bf16-mixed"
    assert "precision bf16-mixed" in (bf16_dir / REPORT_FILE).read_text()
    assert json.loads((bf16_dir / "results.json").read_text())["hyperparameters"]["precision"] == "bf16-mixed"
    if backend == "lightning":
        assert bf16.autocast == torch.bfloat16
    else:
        assert bf16.seen["conv2d"] == "bfloat16" and bf16.seen["logits"] == "float32"
    _, fp32 = _train(backend, fp32_dir, "32")
    assert np.isfinite(bf16.loss) and bf16.loss != fp32.loss  # bf16 did round
    assert bf16.loss == pytest.approx(fp32.loss, rel=FIRST_LOSS_RTOL)
    # the checkpoint holds float32 weights, and a float32 run resumes from it, computing in float32
    assert _checkpoint_dtypes(backend, bf16_dir) == {"float32"}
    resumed, probe = _train(backend, bf16_dir, "32", epochs=2, resume=True)
    assert [row["epoch"] for row in resumed.record.history] == [1, 2]
    assert np.isfinite(resumed.test_logits).all()
    if backend == "lightning":
        assert probe.autocast is False
    else:
        assert set(probe.seen.values()) - {"uint8"} == {"float32"}


@pytest.fixture
def _keep_tensorflow(monkeypatch):
    monkeypatch.setattr(core.frameworks, "without_tensorflow", lambda: None)  # as in tests/test_cli.py


@pytest.mark.parametrize("script", [train_lightning, train_keras])
def test_bf16_is_refused_on_a_cpu_without_bf16_units(script, tmp_path, monkeypatch, capsys, _keep_tensorflow):
    monkeypatch.setattr(cpu_bf16, "cpu_has_bf16", lambda: False)
    code, _, err = call_main(script.main, ["--accelerator", "cpu", "--precision", "bf16-mixed",
                                           "--out", str(tmp_path / "runs")], capsys)
    assert code == 2, err
    assert err.strip().startswith("error: --precision bf16-mixed on the CPU needs bfloat16 units") and \
        len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.rglob("version_*"))


def test_the_bf16_check_reads_the_cpu(monkeypatch):
    """torch's capabilities answer; without them (an older torch), Linux's flags do."""
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": False, "amx_bf16": True}, raising=False)
    assert cpu_bf16.cpu_has_bf16()
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_f": True, "avx512_bf16": False})
    assert not cpu_bf16.cpu_has_bf16()
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    monkeypatch.setattr(cpu_bf16, "_linux_flags", lambda: {"avx512f", "avx512_bf16"})
    assert cpu_bf16.cpu_has_bf16()
    monkeypatch.setattr(cpu_bf16, "_linux_flags", lambda: {"avx512f"})
    assert not cpu_bf16.cpu_has_bf16()


def test_run_lab_gives_every_run_its_precision(tmp_path):
    from lab.pipeline import whole_lab
    from lab.pipeline.jobs import build_jobs, run_settings
    from lab.pipeline.tuned import search_setup

    args = whole_lab.build_parser().parse_args(["--sections", "1", "--backends", "lightning", "--mnist-dataset",
                                                "digits", "--precision", "bf16-mixed", "--out", str(tmp_path)])
    lab, _ = whole_lab.make_lab(args)
    jobs = build_jobs(lab)
    seen = [run_settings(lab, job).precision for job in jobs if job.experiment is not None]
    seen.append(search_setup("lightning", lab.first_cnn(), lab.preset)[0].precision)  # the search and its tuned CNN
    assert len(seen) >= 3 and set(seen) == {"bf16-mixed"}


@needs_bf16
def test_keras_refuses_bf16_on_the_cpu_without_onednn(monkeypatch):
    from core.errors import LabError

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    with pytest.raises(LabError, match="TF_ENABLE_ONEDNN_OPTS=0"):
        keras_training.BACKEND.plan_devices(make_settings({**BASE, "precision": "bf16-mixed"}))
    keras_training.BACKEND.plan_devices(make_settings({**BASE, "precision": "32"}))  # float32 runs either way
