"""The machine's matmul peak (core.matmul_peak, bench.peak), its cache for the lab and a run's share of it in the lab
report (lab.reports.peak_share), FLOPs per image in the lab's comparison tables, and Lightning's measure_flops against
the spec."""
import json

import pytest
import torch
from pytorch_lightning.utilities import measure_flops
from test_analysis import fake_results
from test_compare import make_run

import core.cpu_bf16
from bench import peak as bench_peak
from conftest import call_main
from core.errors import LabError
from core.matmul_peak import best_time, gflops, measure, measure_fresh
from lab.config.settings import make_settings
from lab.pipeline.versus import versus_part
from lab.pipeline.writeup import comparison_table, rows_for
from lab.reports.peak_share import PEAK_FILE, machine_peak, peak_key, share_of_peak, share_text
from lab.specs.architectures import forward_flops
from lab.specs.models import model_spec
from lightning_modules.components import build_network


class FakeClock:
    """Each timed call takes the next of `durations` seconds."""

    def __init__(self, durations):
        self.now, self.durations, self.started = 0.0, list(durations), False

    def __call__(self) -> float:
        if self.started:
            self.now += self.durations.pop(0)
        self.started = not self.started
        return self.now


def test_gflops_is_two_n_cubed_over_the_best_time():
    assert gflops(1000, 0.5) == 2 * 1000**3 / 0.5 / 1e9 == 4.0
    calls = []
    assert best_time(lambda: calls.append(1), repeats=3, warmup=2, clock=FakeClock([0.5, 0.25, 0.75])) == 0.25
    assert len(calls) == 5  # the warm-up calls are run, not timed


@pytest.mark.parametrize("bf16", [True, False])
def test_measure_times_float32_and_bf16_only_where_the_cpu_has_bf16(bf16, monkeypatch):
    monkeypatch.setattr(core.cpu_bf16, "cpu_has_bf16", lambda: bf16)
    threads = torch.get_num_threads()
    try:
        found = measure("torch", 8, repeats=2, threads=1, clock=FakeClock([0.5, 0.25] * 2))
    finally:
        torch.set_num_threads(threads)
    assert found["threads"] == 1 and found["size"] == 8 and found["framework"] == "torch"
    assert found["gflops"] == ({"float32": 2 * 8**3 / 0.25 / 1e9, "bfloat16": 2 * 8**3 / 0.25 / 1e9} if bf16 else
                               {"float32": 2 * 8**3 / 0.25 / 1e9})


def test_a_failed_fresh_measurement_says_why():
    with pytest.raises(RuntimeError, match=r"(?s)the jax matmul failed \(exit 2\): .*invalid choice"):
        measure_fresh("jax", 8, 1)


PEAK = {"torch": {"version": "2", "threads": 2, "size": 2048, "repeats": 5,
                  "gflops": {"float32": 60.0, "bfloat16": 120.0}, "measured_at": "2026-12-06T15:00:00Z"},
        "tensorflow": {"version": "2.21", "threads": 2, "size": 2048, "repeats": 5, "gflops": {"float32": 50.0},
                       "measured_at": "2026-12-06T15:01:00Z"}}


def _results(backend="lightning", precision="32", device="cpu", **overrides):
    results = fake_results(backend=backend, device=device, flops_per_image=1_000_000,
                           timing={"total_s": 10.0, "images_per_s": 1000.0}, **overrides)
    results["hyperparameters"]["precision"] = precision
    return results


def test_the_share_is_the_achieved_gflops_over_the_peak_of_the_framework_in_the_run_precision():
    # 3 x 1 MFLOPs x 1000 images/s = 3 GFLOP/s
    assert share_of_peak(_results(), PEAK) == pytest.approx(3 / 60)
    assert share_of_peak(_results(precision="bf16-mixed"), PEAK) == pytest.approx(3 / 120)
    assert share_of_peak(_results("keras"), PEAK) == pytest.approx(3 / 50)
    assert share_of_peak(_results("keras", "bf16-mixed"), PEAK) is None  # no bf16 peak measured
    assert share_of_peak(_results(device="gpu x1 (NVIDIA H200)"), PEAK) is None  # the peak is the CPU's
    assert share_of_peak(_results(precision="16-mixed"), PEAK) is None
    assert share_of_peak(_results(), {"torch": "the torch matmul failed"}) is None
    assert share_of_peak(_results(), None) is None
    old = fake_results(timing={"total_s": 1.0, "images_per_s": 1000.0})  # no flops_per_image, no device
    assert share_of_peak(old, PEAK) is None
    assert (share_text(3 / 60), share_text(0.0012), share_text(None)) == ("5%", "0.12%", "not measured")


def test_the_lab_keeps_the_peak_per_machine_and_measures_again_when_that_changes(tmp_path, monkeypatch):
    calls = []

    def fake_measure(framework, size, repeats, threads):
        calls.append(framework)
        return {"framework": framework, "version": "x", "threads": 2, "size": size, "repeats": repeats,
                "gflops": {"float32": 10.0 * len(calls)}}

    path = tmp_path / PEAK_FILE
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    first = machine_peak(path, ["torch", "tensorflow"], 8, 1, measure=fake_measure)
    assert calls == ["torch", "tensorflow"] and first["torch"]["key"] == peak_key("torch", 8, 1)
    assert machine_peak(path, ["torch", "tensorflow"], 8, 1, measure=fake_measure) == first and len(calls) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # other threads: another peak, the other framework's kept
    again = machine_peak(path, ["torch"], 8, 1, measure=fake_measure)
    assert calls[2:] == ["torch"] and again["torch"]["gflops"] == {"float32": 30.0}
    saved = json.loads(path.read_text())["peaks"]
    assert sorted(e["framework"] for e in saved) == ["tensorflow", "torch"]
    path.write_text("{not json")
    machine_peak(path, ["torch"], 8, 1, measure=fake_measure)
    assert len(calls) == 4


def test_a_framework_that_cannot_be_measured_is_named_with_its_reason_and_not_saved(tmp_path):
    def failing(framework, size, repeats, threads):
        raise RuntimeError(f"the {framework} matmul failed (exit 1): boom")

    path = tmp_path / PEAK_FILE
    assert machine_peak(path, ["torch"], 8, 1, measure=failing) == {"torch": "the torch matmul failed (exit 1): boom"}
    assert not path.exists()


def test_the_versus_table_gives_each_backend_its_share_of_peak_and_says_where_the_peak_came_from(tmp_path):
    runs = {backend: {"cifar": {"cifar_cnn": make_run(tmp_path / backend, backend, device="cpu",
                                                      flops_per_image=1_000_000,
                                                      timing={"total_s": 10.0, "images_per_s": rate})}}
            for backend, rate in (("keras", 500.0), ("lightning", 1000.0))}
    text = "\n".join(versus_part(runs, ["cifar"], tmp_path, peak=PEAK))
    assert "| Share of peak (Keras / Lightning) |" in text
    assert "| 1 MFLOPs forward | 1.5 / 3 | 3% / 5% |" in text  # 1.5 of 50 and 3 of 60 GFLOP/s
    assert ("torch 2 60 GFLOP/s in float32, 120 GFLOP/s in bfloat16 on 2 thread(s) (best of 5 products of two "
            "2048x2048 matrices), measured 2026-12-06T15:00:00Z") in text
    assert "measured 2026-12-06T15:01:00Z" in text and "far below it" in text
    unmeasured = "\n".join(versus_part(runs, ["cifar"], tmp_path))
    assert "| not measured / not measured |" in unmeasured and "Share of peak:" not in unmeasured


def test_runs_made_before_flops_or_devices_were_recorded_say_not_measured(tmp_path):
    runs = {backend: {"cifar": {"cifar_cnn": make_run(tmp_path / backend, backend)}} for backend in ("keras",
                                                                                                      "lightning")}
    assert "| not recorded / not recorded | not measured / not measured |" in "\n".join(
        versus_part(runs, ["cifar"], tmp_path, peak=PEAK))


def test_the_lab_comparison_tables_show_flops_per_image(tmp_path):
    new = make_run(tmp_path / "new", "lightning", flops_per_image=820_000)
    old = make_run(tmp_path / "old", "lightning")
    table = comparison_table(rows_for([("first CNN", new), ("MLP baseline", old)]), with_gap=True)
    lines = table.splitlines()
    assert lines[0] == "| Model | Accuracy | Time | Epochs | Params | FLOPs per image | Train-val gap |"
    assert lines[2].startswith("| first CNN | 92.43% | 622.84s | 4 | 12,345 | 820 kFLOPs forward | ")
    assert lines[3].startswith("| MLP baseline | 92.43% | 622.84s | 4 | 12,345 | not recorded | ")


@pytest.mark.parametrize("model, shape", [("mlp", (28, 28, 1)), ("first_cnn", (28, 28, 1)),
                                          ("cifar_cnn", (32, 32, 3))])
def test_lightning_measure_flops_counts_what_the_spec_counts_and_a_training_step_at_most_three_times_it(
        model, shape):
    """One FLOP definition for both backends: Lightning's measure_flops (FlopCounterMode) on a meta-device network
    equals the spec count; a training step (forward and backward) counts 2x-3x the forward, which the achieved
    GFLOP/s takes as 3x (the first layer's backward needs no input gradient)."""
    spec = model_spec(make_settings({"model": model}), shape, 10)
    with torch.device("meta"):
        net = build_network(spec, shape, (0.5,) * shape[2], (0.25,) * shape[2])
    images = torch.zeros((2, *shape), dtype=torch.uint8, device="meta")  # 2: batch norm trains on more than one
    forward = measure_flops(net.eval(), lambda: net(images))
    step = measure_flops(net.train(), lambda: net(images), lambda logits: logits.sum())
    assert forward == 2 * forward_flops(spec, shape)
    assert 2 * forward <= step <= 3 * forward


def test_bench_peak_measures_torch_with_tiny_matrices_and_gives_finished_runs_their_share(tmp_path, capsys):
    run = make_run(tmp_path / "runs", "lightning", device="cpu", flops_per_image=1_000_000, profile={"step_ms": 16.0})
    out = tmp_path / "lab" / PEAK_FILE
    code, printed, _ = call_main(bench_peak.main, ["--size", "64", "--repeats", "2", "--frameworks", "torch",
                                                   "--out", str(out), "--runs", str(tmp_path / "runs")], capsys)
    assert code == 0
    entry = json.loads(out.read_text())["peaks"][0]
    assert entry["framework"] == "torch" and entry["size"] == 64 and entry["gflops"]["float32"] > 0
    assert "matmul peak, 64x64 matrices, best of 2, GFLOP/s:" in printed and "| torch |" in printed
    share = 4.5012 / entry["gflops"]["float32"]  # 3 x 1 MFLOPs x 1500.4 images/s; in the step 2000 images/s: 6
    assert (f"| lightning | first_cnn | 32 | 32 | 1,500 | 4.50 | {share_text(share)} | {share_text(share * 6 / 4.5012)}"
            f" | {run} |") in printed
    with pytest.raises(LabError, match="--frameworks takes torch and tensorflow"):
        bench_peak.main(["--frameworks", "jax"])
