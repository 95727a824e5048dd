"""How fast a trained network infers (lab.records.inference_timing, results.json "inference"): the shared timing on a
fake clock, when a run measures it or says why not, and how the reports show it, old runs included."""
from __future__ import annotations

import json

import numpy as np
import pytest

from lab.config.devices import DevicePlan
from lab.config.machine import SHARED_CORES_ENV, shared_cores
from lab.records import inference_timing as inference
from lab.records.results import load_results
from lab.reports.report import inference_text, summary_lines
from lab.run.backend import inference_result

IMAGES = np.arange(10 * 2 * 2 * 1, dtype=np.uint8).reshape(10, 2, 2, 1)


class FakeNetwork:
    """A network whose call takes `seconds(batch size, call index)` on a fake clock; it records what it was given."""

    def __init__(self, seconds):
        self.now, self.seconds, self.batches, self.syncs = 0.0, seconds, [], 0

    def clock(self) -> float:
        return self.now

    def __call__(self, batch: np.ndarray) -> None:
        self.now += self.seconds(len(batch), len(self.batches))
        self.batches.append(batch)

    def sync(self) -> None:
        self.syncs += 1


def test_the_warm_up_is_left_out_and_the_median_p95_and_throughput_are_taken():
    warmup, calls = inference.WARMUP, inference.CALLS

    def seconds(size: int, index: int) -> float:
        if index < warmup:
            return 5.0  # warm-up: far slower, never counted
        if size == 1:  # timed calls 1 ms, 2 ms, ..., 200 ms in turn
            return (index - warmup + 1) / 1000
        return 0.128 if (index - warmup - calls) % 2 else 0.064  # batch calls: 0.064 s, 0.128 s, ...

    net = FakeNetwork(seconds)
    figures = inference.measure(net, IMAGES, net.sync, net.clock, budget_s=None)
    assert [len(b) for b in net.batches] == [1] * (warmup + calls) + [inference.BATCH] * (1 + inference.BATCH_CALLS)
    assert figures["calls_b1"] == calls and figures["calls_b256"] == inference.BATCH_CALLS
    assert figures["ms_per_image_b1"] == pytest.approx(100.5)  # the median of 1..200 ms
    assert figures["p95_ms_b1"] == pytest.approx(190)  # the 190th of 200, nearest rank
    # batch calls after the warm-up one: 0.128, 0.064, 0.128, 0.064, 0.128 s: median 0.128 s
    assert figures["images_per_s_b256"] == pytest.approx(256 / 0.128)
    assert net.syncs == len(net.batches)  # the accelerator waited for after every call
    assert [int(b[0, 0, 0, 0]) for b in net.batches[:12]] == [4 * (i % 10) for i in range(12)]  # image after image


def test_a_run_stops_timing_batch_1_calls_after_its_budget_once_enough_are_timed():
    slow = FakeNetwork(lambda size, index: 0.1)  # 0.1 s a call: the budget ends the timing, MIN_CALLS at least
    assert inference.measure(slow, IMAGES, slow.sync, slow.clock)["calls_b1"] == inference.MIN_CALLS
    quick = FakeNetwork(lambda size, index: 1e-5)  # every call fits the budget
    assert inference.measure(quick, IMAGES, quick.sync, quick.clock)["calls_b1"] == inference.CALLS


def test_the_batch_of_256_comes_from_the_test_images_repeated_where_there_are_fewer():
    batch = inference.batch_of(IMAGES, 256)
    assert batch.shape == (256, 2, 2, 1) and (batch[10:20] == IMAGES).all() and (batch[:10] == IMAGES).all()
    many = np.zeros((300, 2, 2, 1), np.uint8)
    assert inference.batch_of(many, 256).base is many  # a view of the first 256, no copy


def test_shared_cores_are_told_by_the_environment_or_seen_in_a_run_of_several_cpu_devices(monkeypatch):
    monkeypatch.delenv(SHARED_CORES_ENV, raising=False)
    assert shared_cores("cpu", 1) is None and shared_cores("gpu", 2) is None
    assert "2 CPU devices" in shared_cores("cpu", 2)
    monkeypatch.setenv(SHARED_CORES_ENV, "3 lab runs at once")
    assert shared_cores("gpu", 1) == "3 lab runs at once"


def test_a_run_measures_its_inference_only_when_asked_and_alone_on_its_cores(monkeypatch):
    monkeypatch.delenv(SHARED_CORES_ENV, raising=False)
    one, two = DevicePlan("cpu", 1, "32"), DevicePlan("cpu", 2, "32")

    def never():
        raise AssertionError("measured")

    assert inference_result(False, one, never) is None
    assert inference_result(True, two, never) == {"skipped": shared_cores("cpu", 2)}
    assert inference_result(True, one, lambda: {"ms_per_image_b1": 1.0}) == {"ms_per_image_b1": 1.0}


def test_reports_say_not_measured_for_runs_made_before_and_why_for_the_others():
    from test_analysis import fake_results

    old = fake_results()
    assert "- Inference: not measured" in summary_lines(old)
    assert inference_text({**old, "hyperparameters": {"profile": False}}) == "not measured (--profile false)"
    assert inference_text({**old, "inference": None, "inference_skipped": "3 lab runs at once"}) == \
        "not measured (3 lab runs at once)"
    measured = {**old, "inference": {"ms_per_image_b1": 0.1234, "p95_ms_b1": 0.2, "images_per_s_b256": 45678.9,
                                     "calls_b1": 200, "calls_b256": 5, "machine": "cpu: Test CPU, 2 cores"}}
    assert inference_text(measured) == (
        "0.123 ms per image at batch 1 (median of 200 calls, p95 0.2 ms), 45,679 images/s at batch 256; the network "
        "in eval mode under torch.inference_mode, on cpu: Test CPU, 2 cores")


def test_the_versus_table_shows_inference_beside_the_training_time_and_old_runs_as_not_measured(tmp_path):
    from test_compare import make_run

    from lab.pipeline.versus import versus_part

    speed = {"ms_per_image_b1": 0.5, "p95_ms_b1": 0.7, "images_per_s_b256": 12345.6, "calls_b1": 200,
             "calls_b256": 5, "machine": "cpu"}
    runs = {"keras": {"cifar": {"old": make_run(tmp_path / "k", "keras", experiment="old"),
                                "new": make_run(tmp_path / "k", "keras", experiment="new", inference=speed)}},
            "lightning": {"cifar": {"old": make_run(tmp_path / "l", "lightning", experiment="old"),
                                    "new": make_run(tmp_path / "l", "lightning", experiment="new", inference=None)}}}
    table = "\n".join(versus_part(runs, ["cifar"], tmp_path))
    assert "Inference ms per image, batch 1 (Keras / Lightning)" in table
    assert table.count("| not measured | not measured |") == 1  # the old pair
    assert "| 0.5 / not measured | 12,346 / not measured |" in table


def _tiny_run(backend: str, tmp_path, **values):
    from lab.config.settings import make_settings
    from lab.run.runner import run_settings

    settings = make_settings({"dataset": "digits", "model": "mlp", "hidden": 8, "epochs": 1, "train_images": 64,
                              "out": str(tmp_path), **values})
    return run_settings(backend, settings)


@pytest.mark.parametrize("backend", ["lightning", "keras"])
def test_a_digits_run_records_its_inference_speed(backend, tmp_path, monkeypatch):
    monkeypatch.delenv(SHARED_CORES_ENV, raising=False)
    run_dir = _tiny_run(backend, tmp_path)
    figures = load_results(run_dir)["inference"]
    assert figures["ms_per_image_b1"] > 0 and figures["p95_ms_b1"] >= figures["ms_per_image_b1"]
    assert figures["images_per_s_b256"] > 0 and figures["machine"].startswith("cpu")
    assert inference.MIN_CALLS <= figures["calls_b1"] <= inference.CALLS
    assert "- Inference: " in (run_dir / "report.md").read_text()


def test_a_run_on_shared_cores_says_why_it_has_no_inference_speed(tmp_path, monkeypatch):
    """(A run with --profile false has none at all: tests/test_inference_bench.py.)"""
    from lightning_modules import training

    def never(*args, **kwargs):
        raise AssertionError("measured")

    monkeypatch.setattr(training, "inference_speed", never)
    monkeypatch.setenv(SHARED_CORES_ENV, "2 lab runs at once on these cores")
    run_dir = _tiny_run("lightning", tmp_path)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["inference"] is None and results["inference_skipped"] == "2 lab runs at once on these cores"
    assert "- Inference: not measured (2 lab runs at once on these cores)" in (run_dir / "report.md").read_text()
