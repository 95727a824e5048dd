"""export.py: ONNX of first_cnn and cifar_cnn (batch norm, dropout) from both backends checked, uint8 with a symbolic
batch, equal to the framework's inference-mode logits at batch sizes 1 and 7; a mixed-precision Keras model exported
in float32; the parity check failing. On tiny finished mlp runs: ONNX, pt2, SavedModel (and, slow, LiteRT) files that
give the runs' own test probabilities, also where neither torch nor TensorFlow is imported; every bad input in one
sentence, nothing written. Slow: a zoo backbone of each backend.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import core.frameworks
import export as export_script
from conftest import call_main
from core.errors import LabError
from lab.config.data import load_data
from lab.config.settings import make_settings
from lab.export import export_run, onnx_file
from lab.export.export_run import EXPORT_JSON, TOLERANCE, ExportFailed, check_parity, export_record
from lab.reports.metrics import softmax
from lab.run import train_cli
from lab.run.backend import Exported
from lab.specs.models import model_spec

BACKENDS = ("lightning", "keras")
SHAPE, CLASSES = (8, 8, 1), 10
MEAN, STD = [0.3], [0.25]


@pytest.fixture(autouse=True)
def _keep_tensorflow(monkeypatch):  # this process runs Keras too
    monkeypatch.setattr(core.frameworks, "without_tensorflow", lambda: None)


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *SHAPE), dtype=np.uint8)


def _spec(model: str) -> list:
    return model_spec(make_settings({"model": model, "dataset": "digits"}), SHAPE, CLASSES)


# ------------------------------------------------------------------------------ ONNX of each network, both backends

def _lightning_onnx(model: str, path: Path):
    """Export a network left in training mode; its logits in inference and in training mode."""
    from lightning_modules.components.network import build_network
    from lightning_modules.exporting import export_network

    torch.manual_seed(0)
    net = build_network(_spec(model), SHAPE, MEAN, STD)
    for module in net.modules():  # batch-norm statistics other than the initial 0 and 1
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    net.train()
    export_network(net, "onnx", path, SHAPE)

    def logits(training: bool):
        def run(images: np.ndarray) -> np.ndarray:
            net.train(training)
            with torch.no_grad():
                return net(torch.from_numpy(images)).numpy()
        return run
    return logits(False), logits(True)


def _keras_onnx(model: str, path: Path):
    from core.frameworks import keras
    from keras_models.components.network import build_network
    from keras_models.exporting import export_model

    keras.utils.set_random_seed(0)
    net = build_network(_spec(model), SHAPE, MEAN, STD, name=model)
    rng = np.random.default_rng(0)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, beta, rng.uniform(-0.5, 0.5, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
    export_model(net, "onnx", path)
    return (lambda x: net(x, training=False).numpy()), (lambda x: net(x, training=True).numpy())


EXPORTERS = {"lightning": _lightning_onnx, "keras": _keras_onnx}


@pytest.mark.parametrize("backend, model", [  # mlp: also the finished runs' exports below
    ("lightning", "first_cnn"), ("lightning", "cifar_cnn"), ("keras", "first_cnn"),
    pytest.param("keras", "cifar_cnn", marks=pytest.mark.slow),  # Keras' batch norm: also the mixed-precision test's
    pytest.param("lightning", "mlp", marks=pytest.mark.slow), pytest.param("keras", "mlp", marks=pytest.mark.slow),
])
def test_onnx_is_valid_uint8_with_a_symbolic_batch_and_matches_inference_mode(backend, model, tmp_path):
    path = tmp_path / "model.onnx"
    inference, training = EXPORTERS[backend](model, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    found = onnx_file.describe(path)
    assert found["opset"] == 18
    assert found["input"] == {"name": "images", "dtype": "uint8", "shape": ["batch", *SHAPE]}
    assert found["output"] == {"name": "logits", "dtype": "float32", "shape": ["batch", CLASSES]}
    for batch in (1, 7):
        images = _images(batch, seed=batch)
        got, want = onnx_file.run_onnx(path, images), inference(images)
        assert got.shape == (batch, CLASSES)
        np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)
        assert export_run.top1_disagreements(want, got) == 0  # random weights: near-ties within TOLERANCE happen
    if model == "cifar_cnn":  # batch norm and dropout: the training mode's logits differ, so the check has teeth
        images = _images(7, seed=7)
        assert np.abs(training(images) - inference(images)).max() > 1e-2


def test_a_mixed_precision_keras_model_is_exported_in_float32(tmp_path):
    from core.frameworks import keras
    from keras_models.components.network import build_network
    from keras_models.exporting import export_model, float32_model

    spec = _spec("cifar_cnn")
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        mixed = build_network(spec, SHAPE, MEAN, STD)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    twin = build_network(spec, SHAPE, MEAN, STD)
    twin.set_weights(mixed.get_weights())
    model = float32_model(mixed)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    export_model(model, "onnx", tmp_path / "model.onnx")
    images = _images(7, seed=3)
    np.testing.assert_allclose(onnx_file.run_onnx(tmp_path / "model.onnx", images),
                               twin(images, training=False).numpy(), atol=TOLERANCE, rtol=0)




# ------------------------------------------------------------------------------------------------- the parity check

def _record(reference: np.ndarray, exported: np.ndarray, tmp_path: Path) -> dict:
    results = {"backend": "keras", "model": "mlp", "hyperparameters": {"precision": "32"}}
    return export_record("saved_model", results, ("last", tmp_path / "last.keras"),
                         Exported(reference, exported, {"opset": None}),
                         {"images": "seeded", "seed": 0, "count": len(reference), "shape": SHAPE}, tmp_path / "x")


def test_the_parity_check_fails_on_a_top1_change_or_a_difference_above_the_tolerance(tmp_path):
    reference = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0]], dtype=np.float32)
    close = _record(reference, reference + 5e-5, tmp_path)["parity"]
    assert close["top1_agree"] and close["max_abs_logit_diff"] == pytest.approx(5e-5, rel=1e-2)
    check_parity(close)
    far = _record(reference, reference + np.float32(2e-4), tmp_path)["parity"]
    assert far["top1_agree"]
    swapped = _record(reference, reference[:, ::-1].copy(), tmp_path)["parity"]
    assert swapped["top1_disagreements"] == 2
    tie = np.array([[1.0, 1.0 + 4e-5, 0.0]], dtype=np.float32)  # the network's top two 4e-5 apart
    near_tie = _record(tie, tie[:, [1, 0, 2]].copy(), tmp_path)["parity"]  # flipped within the tolerance
    assert near_tie["top1_agree"] and near_tie["max_abs_logit_diff"] < TOLERANCE
    check_parity(near_tie)
    for parity in (far, swapped):
        with pytest.raises(ExportFailed, match="disagrees") as raised:
            check_parity(parity)
        assert raised.value.exit_code == 1


# ------------------------------------------------------------------------------------ export.py on finished runs

@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One finished digits mlp run per backend: 1 epoch on 100 images."""
    out = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(core.frameworks, "without_tensorflow", lambda: None)
        for backend in BACKENDS:
            code = train_cli.main(backend, ["--dataset", "digits", "--model", "mlp", "--epochs", "1",
                                            "--train-images", "100", "--profile", "false", "--out", str(out),
                                            "--progress", "none"])
            assert code == 0
    return {backend: out / "mlp-digits" / backend / "version_0" for backend in BACKENDS}


def _export(capsys, *argv) -> tuple[int, str, str]:
    return call_main(export_script.main, [str(a) for a in argv], capsys)


def _run_probs(run_dir: Path) -> np.ndarray:
    with np.load(run_dir / "predictions.npz") as saved:
        return saved["probs"]


def _test_images(run_dir: Path) -> np.ndarray:
    return load_data(make_settings(json.loads((run_dir / "settings.json").read_text()))).test.images


def _pt2_logits(path: Path, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.export.load(str(path)).module()(torch.from_numpy(images)).numpy()


def _saved_model_logits(path: Path, images: np.ndarray) -> np.ndarray:
    from core.frameworks import tf

    loaded = tf.saved_model.load(str(path))
    return loaded.serve(tf.constant(images)).numpy()


def _litert_logits(path: Path, images: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(source["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], images)
    interpreter.invoke()
    return interpreter.get_tensor(target["index"])


RUNNERS = {"onnx": onnx_file.run_onnx, "pt2": _pt2_logits, "saved_model": _saved_model_logits,
           "litert": _litert_logits}
FILES = {"onnx": "model.onnx", "pt2": "model.pt2", "saved_model": "saved_model", "litert": "model.tflite"}


@pytest.mark.parametrize("backend, fmt", [
    ("lightning", "onnx"), ("lightning", "pt2"), ("keras", "onnx"), ("keras", "saved_model"),
    pytest.param("keras", "litert", marks=pytest.mark.slow),
])
def test_an_export_gives_the_runs_own_test_probabilities_and_records_its_check(backend, fmt, runs, capsys):
    run_dir = runs[backend]
    code, out, err = _export(capsys, run_dir, "--format", fmt)
    assert code == 0, err
    folder = run_dir / "exported" / fmt
    assert sorted(p.name for p in folder.iterdir()) == sorted([FILES[fmt], EXPORT_JSON])
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    record = json.loads((folder / EXPORT_JSON).read_text())
    images = _test_images(run_dir)
    parity = record["parity"]
    assert parity["images"] == "test" and parity["count"] == len(images) and parity["top1_agree"]
    assert parity["max_abs_logit_diff"] <= TOLERANCE
    assert record["input"] == {"name": "images", "dtype": "uint8", "layout": "NHWC", "shape": [None, *SHAPE]}
    assert record["opset"] == (18 if fmt == "onnx" else None) and record["checkpoint"] == "last"
    assert "onnxruntime" in record["versions"] and record["precision"] == {"trained": "32", "exported": "float32"}
    # the exported file, loaded here on its own, against the run's own test probabilities
    if fmt == "onnx":
        onnx.checker.check_model(onnx.load(str(folder / FILES[fmt])), full_check=True)
        assert record["onnx_file"]["input"]["shape"] == ["batch", *SHAPE]
    probs = softmax(RUNNERS[fmt](folder / FILES[fmt], images))
    np.testing.assert_allclose(probs, _run_probs(run_dir), atol=1e-5)


SCRIPT = """
import json, sys
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
images = np.load(sys.argv[2])
logits = session.run(["logits"], {"images": images})[0]
print(json.dumps({"logits": logits.tolist(), "loaded": sorted(m for m in ("torch", "tensorflow", "keras")
                                                                if m in sys.modules)}))
"""


@pytest.mark.multiprocess
def test_the_onnx_file_runs_where_neither_torch_nor_tensorflow_is_imported(runs, tmp_path, spawn, capsys):
    """The Lightning run's ONNX file in a fresh interpreter: the run's own test probabilities, no framework loaded."""
    import subprocess

    run_dir = runs["lightning"]
    path = run_dir / "exported" / "onnx" / "model.onnx"
    if not path.exists():  # exported by the test above unless run alone
        assert _export(capsys, run_dir, "--format", "onnx")[0] == 0
    np.save(tmp_path / "images.npy", _test_images(run_dir))
    process = spawn(["-c", SCRIPT, path, tmp_path / "images.npy"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    answer = json.loads(out)
    assert answer["loaded"] == []
    np.testing.assert_allclose(softmax(np.array(answer["logits"], dtype=np.float32)), _run_probs(run_dir), atol=1e-5)


def _assert_refused(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
    for fragment in fragments:
        assert fragment in err


@pytest.mark.parametrize("backend, argv, fragments", [
    ("lightning", ["--format", "tflite"], ["--format must be one of"]),
    ("keras", ["--format", "pt2"], ["cannot be exported as pt2", "onnx, saved_model, litert"]),
    ("lightning", ["--format", "saved_model"], ["cannot be exported as saved_model", "onnx, pt2"]),
])
def test_bad_formats_are_refused_in_one_sentence_and_nothing_is_written(backend, argv, fragments, runs, capsys):
    code, _, err = _export(capsys, runs[backend], *argv)
    _assert_refused(code, err, *fragments)
    assert not (runs[backend] / "exported" / argv[1]).exists()


def test_a_folder_that_is_not_a_finished_run_is_refused(tmp_path, capsys):
    code, _, err = _export(capsys, tmp_path, "--format", "onnx")
    _assert_refused(code, err, "is not a finished run")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_needs_overwrite_and_seeded_images_stand_in_for_missing_data(runs, tmp_path, capsys,
                                                                                        monkeypatch):
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    code, _, err = _export(capsys, runs["lightning"], "--format", "onnx", "--out", out)
    _assert_refused(code, err, "already exists", "--overwrite")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    (tmp_path / "a-file").write_text("x")
    code, _, err = _export(capsys, runs["lightning"], "--format", "onnx", "--out", tmp_path / "a-file" / "deploy")
    _assert_refused(code, err, "is a file")
    def no_data(settings):
        raise LabError("the digits are not here.")

    monkeypatch.setattr(export_run, "load_data", no_data)
    code, _, err = _export(capsys, runs["lightning"], "--format", "onnx", "--out", out, "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [EXPORT_JSON, "model.onnx"]
    parity = json.loads((out / EXPORT_JSON).read_text())["parity"]
    assert parity["images"] == "seeded" and parity["count"] == 1000 and "not here" in parity["why"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "deploy"]  # no temporary folder left



@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_zoo_backbone_exports_to_onnx(backend, tmp_path, capsys):
    """MobileNetV3-Small from scratch, resized in the network: Keras's exporter must not run its batch norm in
    training mode (keras_models.exporting.in_inference_mode)."""
    code = train_cli.main(backend, ["--dataset", "digits", "--model", "mobilenet", "--image-size", "32", "--epochs",
                                    "1", "--train-images", "100", "--profile", "false", "--out",
                                    str(tmp_path / "runs"), "--progress", "none"])
    assert code == 0
    run_dir = tmp_path / "runs" / "mobilenet-digits" / backend / "version_0"
    code, _, err = _export(capsys, run_dir, "--format", "onnx")
    assert code == 0, err
    probs = softmax(onnx_file.run_onnx(run_dir / "exported" / "onnx" / "model.onnx", _test_images(run_dir)))
    np.testing.assert_allclose(probs, _run_probs(run_dir), atol=1e-5)
