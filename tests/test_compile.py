"""--compile: torch.compile (Lightning) and XLA (Keras) give the eager losses, are refused in one sentence where
they cannot run, and a compiled run's checkpoints load into eager runs and back.

torch.compile runs with its aot_eager backend here (LAB_TORCH_COMPILE_BACKEND): the same Dynamo graphs and
AOTAutograd backward as inductor, without generating C++, which takes a minute on a cold cache;
`-m slow` checks inductor itself."""
from __future__ import annotations

import numpy as np
import pytest

from lab.config.settings import make_settings

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SMALL = {"model": "mlp", "hidden": 16}  # a small graph: compiling is the cost of these tests


@pytest.fixture(scope="module")
def digits():
    from datamodules import load_splits

    return load_splits("digits")


@pytest.fixture
def aot_eager(monkeypatch):
    from lightning_modules.compiling import BACKEND_ENV

    monkeypatch.setenv(BACKEND_ENV, "aot_eager")


def _lightning_losses(settings, splits, compiled: bool) -> list[float]:
    """The losses of the first two training batches, one Adam step between them."""
    import pytorch_lightning as pl
    import torch
    from torch.nn import functional as F

    from lightning_modules.compiling import compile_network
    from lightning_modules.training import build_model

    pl.seed_everything(settings.seed, verbose=False)
    module = build_model(settings, splits)
    if compiled:
        compile_network(module.net)
    opt = module.configure_optimizers()
    losses = []
    for start in (0, settings.batch_size):
        end = start + settings.batch_size
        x, y = torch.from_numpy(splits.train.images[start:end]), torch.from_numpy(splits.train.labels[start:end])
        loss = F.cross_entropy(module(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _keras_losses(settings, splits) -> list[float]:
    from core.frameworks import keras
    from keras_models.training import build_model

    keras.utils.set_random_seed(settings.seed)
    model = build_model(settings, splits)
    n = settings.batch_size
    return [float(model.train_on_batch(splits.train.images[s:s + n], splits.train.labels[s:s + n])[0])
            for s in (0, n)]


def test_torch_compile_gives_the_eager_first_batch_losses(digits, aot_eager):
    settings = make_settings({"dataset": "digits", "seed": 3, **SMALL})
    eager, compiled = (_lightning_losses(settings, digits, c) for c in (False, True))
    assert compiled == pytest.approx(eager, rel=1e-5) and eager[0] != eager[1]


def test_xla_gives_the_eager_first_batch_losses(digits):
    from keras_models.training import _op_determinism

    eager = _keras_losses(make_settings({"dataset": "digits", "seed": 3, **SMALL}), digits)
    _op_determinism(False)  # as plan_devices does for --compile
    try:
        compiled = _keras_losses(make_settings({"dataset": "digits", "seed": 3, "compile": True, **SMALL}), digits)
    finally:
        _op_determinism(True)
    assert compiled == pytest.approx(eager, rel=1e-4) and eager[0] != eager[1]


def test_compile_without_a_cpp_compiler_is_refused_in_one_sentence(tmp_path, monkeypatch, capsys):
    from conftest import call_main
    from lab.run.train_cli import main
    from lightning_modules.compiling import BACKEND_ENV

    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setenv("CXX", "no-such-g++")
    code, _, err = call_main(lambda argv: main("lightning", argv),
                             ["--dataset", "digits", "--compile", "true", "--out", str(tmp_path)], capsys)
    assert code == 2 and err.count("\n") == 1 and "--compile needs a C++ compiler (no-such-g++" in err
    assert "Traceback" not in err and not list(tmp_path.iterdir())


def test_xla_that_keras_would_switch_off_is_refused(digits):
    from core.errors import LabError
    from keras_models.training import _op_determinism, build_model

    _op_determinism(True)  # Keras runs no XLA under deterministic ops, and would only warn
    with pytest.raises(LabError, match="--compile cannot compile this model with XLA"):
        build_model(make_settings({"dataset": "digits", "compile": True}), digits)


def test_state_dicts_go_between_compiled_and_eager_networks(digits, tmp_path):
    import torch

    from lightning_modules.classifier import ImageClassifier
    from lightning_modules.compiling import compile_network, is_compiled
    from lightning_modules.training import build_model
    from lightning_modules.weights import read_state

    settings = make_settings({"dataset": "digits"})
    compiled, eager = build_model(settings, digits), build_model(make_settings({"dataset": "digits", "seed": 1}),
                                                                   digits)
    compile_network(compiled.net)
    assert is_compiled(compiled.net) and not is_compiled(eager.net)
    assert list(compiled.state_dict()) == list(eager.state_dict())  # in place: no _orig_mod. in the keys
    eager.load_state_dict(compiled.state_dict())
    compiled.load_state_dict(build_model(settings, digits).state_dict())
    # A network wrapped as torch.compile(net) (not compiled until called) writes its keys under _orig_mod.
    wrapped = torch.compile(build_model(make_settings({"dataset": "digits", "seed": 2}), digits).net)
    torch.save(wrapped.state_dict(), tmp_path / "wrapped.pth")
    assert all(key.startswith("_orig_mod.") for key in wrapped.state_dict())
    eager.net.load_state_dict(read_state(tmp_path / "wrapped.pth"))
    checkpoint = {"state_dict": {f"net._orig_mod.{k}": v for k, v in wrapped._orig_mod.state_dict().items()}}
    ImageClassifier.on_load_checkpoint(compiled, checkpoint)
    compiled.load_state_dict(checkpoint["state_dict"])
    for a, b in zip(compiled.net.parameters(), wrapped.parameters()):
        assert torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["lightning", "keras"])
def test_a_compiled_run_resumes_and_its_weights_start_an_eager_run(backend, tmp_path, aot_eager):
    """A compiled run (timing says so), resumed for another epoch; its checkpoint starts an eager run."""
    from lab.records.results import load_results
    from lab.run.runner import run_settings

    base = {"dataset": "digits", "model": "mlp", "hidden": 8, "train_images": 96, "out": str(tmp_path)}
    run_dir = run_settings(backend, make_settings({**base, "epochs": 1, "compile": True}))
    assert load_results(run_dir)["timing"]["compiled"] is True
    (run_dir / "results.json").unlink()  # as if killed after its first epoch
    run_settings(backend, make_settings({**base, "epochs": 2, "compile": True}), resume_dir=run_dir)
    timing = load_results(run_dir)["timing"]
    assert timing["compiled"] is True and timing["compile_s"] is not None and len(timing["epoch_s"]) == 2
    transferred = run_settings(backend, make_settings({**base, "epochs": 1, "weights": str(run_dir), "name": "t"}))
    results = load_results(transferred)
    assert results["timing"]["compiled"] is False
    assert results["extra"]["transfer"]["head"].startswith("loaded with the weights"), results["extra"]


@pytest.mark.slow
def test_inductor_gives_the_eager_first_batch_losses(digits):
    """torch.compile's default backend, generating C++ (about a minute on a cold cache)."""
    settings = make_settings({"dataset": "digits", "seed": 3})
    eager, compiled = (_lightning_losses(settings, digits, c) for c in (False, True))
    assert compiled == pytest.approx(eager, rel=1e-4) and eager[0] != eager[1]


def test_eager_keys_drop_the_prefix_anywhere():
    from lightning_modules.compiling import eager_keys

    state = {"net._orig_mod.0.weight": np.zeros(1), "_orig_mod.1.bias": np.ones(1), "plain": 0}
    assert list(eager_keys(state)) == ["net.0.weight", "1.bias", "plain"]


@pytest.mark.parametrize("backend", ["lightning", "keras"])
def test_compile_on_the_cpu_warns_once_in_one_sentence_what_it_costs(backend, monkeypatch, capsys):
    """A warning, not a refusal: the run goes on. Planned twice (the lab plans each run), said once."""
    from core import errors
    from lab.run.backend import get_backend
    from lightning_modules.compiling import BACKEND_ENV

    monkeypatch.delenv(BACKEND_ENV, raising=False)
    monkeypatch.setattr(errors, "_warned", set())
    chosen = get_backend(backend)
    try:
        for compiled in (False, True, True):
            plan = chosen.plan_devices(make_settings({"dataset": "digits", "compile": compiled}))
    finally:
        if backend == "keras":
            from keras_models.training import _op_determinism

            _op_determinism(True)  # plan_devices turned it off for --compile
    err = capsys.readouterr().err
    assert plan.accelerator == "cpu" and err.count("warning: --compile") == 1 and err.count("\n") == 1
    assert "slower" in err and "drop --compile on the CPU" in err


def test_compile_on_the_cpu_says_nothing_under_a_test_backend(monkeypatch, capsys):
    from core import errors
    from lightning_modules.compiling import BACKEND_ENV, warn_cpu_cost

    monkeypatch.setattr(errors, "_warned", set())
    monkeypatch.setenv(BACKEND_ENV, "aot_eager")  # no generated kernels: not what the warning is about
    warn_cpu_cost("cpu")
    monkeypatch.delenv(BACKEND_ENV)
    warn_cpu_cost("gpu")
    assert capsys.readouterr().err == ""


def test_bench_compile_step_times_keras_eager_against_xla(capsys):
    import json

    from bench.compile_step import main
    from keras_models.training import _op_determinism

    _op_determinism(False)  # an earlier test's run turned TensorFlow's deterministic ops on: no XLA under them
    main(["--backend", "keras", "--model", "mlp", "--pairs", "1", "--batch-size", "8"])
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "keras" and out["first_step_s"] >= 0 and out["eager first_step_s"] >= 0
    assert all(out[f"{way} {clock} ms"] > 0 for way in ("eager", "compiled") for clock in ("wall", "cpu"))
    assert out["compiled/eager wall"] > 0


def test_bench_compile_step_refuses_torch_options_with_keras_in_one_line(capsys):
    from bench.compile_step import main

    with pytest.raises(SystemExit) as stop:
        main(["--backend", "keras", "--inductor", "freezing=True", "--mode", "default"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--mode, --inductor" in err and "--backend keras" in err
