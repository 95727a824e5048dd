"""The lab's time estimates (lab.pipeline.estimates): a rate from earlier finished runs times each job's planned
work (training images x epochs x FLOPs per image); --estimates-from; the plan's totals; --worker-silence. No
training: the earlier runs are results.json and trials.csv files written here."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import call_main
from lab.config.settings import make_settings
from lab.pipeline import tuned
from lab.pipeline.estimates import DataSize, Estimate, job_estimates, planned_work
from lab.pipeline.jobs import Job, Lab, build_jobs
from lab.pipeline.plan import PRESETS
from lab.pipeline.plan_file import longest_chain, plan_totals
from lab.pipeline.whole_lab import main
from lab.records.results import RESULTS_FILE
from lab.specs.architectures import forward_flops
from lab.specs.models import model_spec
from lab.tuning.search import SEARCH_FILE
from lab.tuning.trials import CSV_FILE

MNIST = DataSize(200, (8, 8, 1), tuple("0123456789"), (20,) * 10, "digits", None)
CIFAR = DataSize(4000, (32, 32, 3), tuple(f"c{i}" for i in range(10)), (400,) * 10, "folder", None)


def _lab(out: Path, preset: str, sections: list[str], backends: list[str] = ("lightning",)) -> Lab:
    data = {"mnist": {"dataset": "digits", "data_dir": None}, "cifar": {"dataset": "folder", "data_dir": "x"}}
    return Lab(list(backends), sections, {**PRESETS[preset], "name": preset}, data, 10, False,
               {"out": str(out), "seed": 0}, sizes={"mnist": MNIST, "cifar": CIFAR})


def _flops(size: DataSize, classes: int | None = None, **settings) -> int:
    spec = model_spec(make_settings(settings), size.input_shape, classes or len(size.class_names))
    return forward_flops(spec, size.input_shape)


def _run(out: Path, key: str, backend: str, *, train: int, epochs: int, flops: int, seconds: float,
         model: str = "first_cnn", dataset: str = "digits") -> None:
    folder = out / f"{key}-{dataset}" / backend / "version_0"
    folder.mkdir(parents=True)
    (folder / RESULTS_FILE).write_text(json.dumps({
        "backend": backend, "split_sizes": {"train": train}, "epochs_run": epochs, "flops_per_image": flops,
        "timing": {"total_s": seconds}, "hyperparameters": {"name": f"{key}-{dataset}", "dataset": dataset,
                                                            "model": model}}))


def _estimates(lab: Lab, folders: list[Path]) -> dict[str, Estimate]:
    return job_estimates(lab, build_jobs(lab), folders)


def test_double_the_images_and_epochs_is_four_times_the_time(tmp_path):
    lab = _lab(tmp_path / "out", "full", ["mnist"])  # first_cnn: 20 epochs on the 200 training images
    _run(lab.out, "first_cnn", "lightning", train=100, epochs=10, flops=_flops(MNIST, model="first_cnn"),
         seconds=30.0)
    found = _estimates(lab, [lab.out])["lightning.first_cnn"]
    assert found.seconds == pytest.approx(4 * 30.0)
    assert found.source == f"1 run of lightning first_cnn in {lab.out.resolve()}, scaled by work"


def test_the_other_backends_rate_counts_only_where_the_same_backend_has_none(tmp_path):
    lab = _lab(tmp_path / "out", "full", ["mnist"], ["keras", "lightning"])
    flops = _flops(MNIST, model="first_cnn")
    _run(lab.out, "first_cnn", "keras", train=200, epochs=20, flops=flops, seconds=50.0)
    found = _estimates(lab, [lab.out])
    assert found["lightning.first_cnn"].seconds == pytest.approx(50.0)
    assert "of first_cnn in" in found["lightning.first_cnn"].source
    assert found["lightning.mlp"].seconds is None and found["lightning.mlp"].source == "no estimate"
    _run(lab.out, "first_cnn", "lightning", train=200, epochs=20, flops=flops, seconds=20.0)
    found = _estimates(lab, [lab.out])
    assert found["lightning.first_cnn"].seconds == pytest.approx(20.0)
    assert found["keras.first_cnn"].seconds == pytest.approx(50.0)


def test_a_quick_run_no_longer_estimates_a_full_job_at_its_own_seconds(tmp_path):
    quick, full = PRESETS["quick"], PRESETS["full"]
    shape = {"model": "cifar_cnn", "dense_units": quick["dense_units"]}
    quick_flops = _flops(CIFAR, width=quick["width"], depth=quick["depth"], **shape)
    lab = _lab(tmp_path / "out", "full", ["cifar", "transfer"])
    _run(lab.out, "cifar_cnn", "lightning", train=quick["cifar_train_images"], epochs=quick["cifar_epochs"],
         flops=quick_flops, seconds=100.0, model="cifar_cnn", dataset="folder")
    found = _estimates(lab, [lab.out])
    full_flops = _flops(CIFAR, model="cifar_cnn", width=full["width"], depth=full["depth"],
                        dense_units=full["dense_units"])
    work = (CIFAR.train * full["cifar_epochs"] * full_flops) / (quick["cifar_train_images"] * 3 * quick_flops)
    assert found["lightning.cifar_cnn"].seconds == pytest.approx(100.0 * work) and work > 10
    # no run of their own: the cifar_cnn model's rate, on half the classes; fine-tuning counts its 1 + 10 epochs
    fine = _flops(CIFAR, 5, model="cifar_cnn", width=full["width"], depth=full["depth"],
                  dense_units=full["dense_units"])
    assert found["lightning.fine_tuned"].seconds == pytest.approx(
        100.0 * (CIFAR.train // 2) * 11 * fine / (quick["cifar_train_images"] * 3 * quick_flops))
    assert "lightning cifar_cnn models" in found["lightning.fine_tuned"].source


def _search(out: Path, backend: str, rows: int, seconds: float, epochs: int) -> None:
    folder = out / "tune-digits-quick" / backend / "tuning"
    folder.mkdir(parents=True)
    (folder / SEARCH_FILE).write_text(json.dumps({"backend": backend, "dataset": "digits", "image_size": None,
                                                  "trial_fraction": 1.0, "max_trial_images": 4000}))
    space = {**_quick_cnn(), "dropout": 0.1, "optimizer": "adam", "lr": 0.001, "batch_size": 32}
    del space["model"]
    with open(folder / CSV_FILE, "w", newline="") as f:
        writer = csv.DictWriter(f, ["trial", "status", *space, "epochs_run", "time_s"])
        writer.writeheader()
        for trial in range(rows):
            writer.writerow({"trial": trial, "status": "COMPLETED", **space, "epochs_run": epochs,
                             "time_s": seconds})


def test_a_search_is_estimated_per_trial_epoch(tmp_path):
    lab = _lab(tmp_path / "out", "quick", ["mnist"])  # 4 trials of 2 epochs, one model in the quick space
    _search(lab.out, "lightning", rows=2, seconds=10.0, epochs=1)
    found = _estimates(lab, [lab.out])
    assert found["lightning.search"].seconds == pytest.approx(4 * 2 * 10.0)
    assert found["lightning.search"].source.startswith("1 search of lightning search in")
    assert found["lightning.tuned_cnn"].seconds is not None  # the cnn model's rate, from the search's trials
    model, work = planned_work(lab, build_jobs(lab)[-1])
    assert (model, work) == ("cnn", MNIST.train * 3 * _flops(MNIST, **_quick_cnn()))


def _quick_cnn() -> dict:
    """The quick search space's one model."""
    return {"model": "cnn", "blocks": 2, "filters": 32, "kernel_size": 3, "padding": "same", "dense_units": 128,
            "batch_norm": False, "pool": True}


def test_the_plan_totals_per_stage_and_section_and_on_n_devices():
    jobs = [Job("a.pre", "a", "pre", "", ("transfer",)), Job("a.fine", "a", "fine", "", ("transfer",), ("a.pre",)),
            Job("a.x", "a", "x", "", ("mnist",))]
    guess = {"a.pre": Estimate(3600.0, ""), "a.fine": Estimate(1800.0, ""), "a.x": Estimate(None, "no estimate")}
    assert longest_chain(jobs, guess) == 5400.0
    lines = plan_totals(jobs, guess, 4)
    assert lines[:2] == ["stage 1: 2 job(s), 60 min plus 1 job(s) with no estimate", "stage 2: 1 job(s), 30 min"]
    assert "section 1 (mnist): 1 job(s), no estimate" in lines and "section 4 (transfer): 2 job(s), 1.5 h" in lines
    assert lines[-2] == "the lab: 3 job(s), 1.5 h plus 1 job(s) with no estimate (device time: one job after another)"
    assert lines[-1] == "on 4 devices at least 1.5 h (the longest chain of jobs that wait for each other, a " \
                        "search's trials over 4 workers: 1.5 h; the device time / 4: 22 min)"
    search = [Job("a.search", "a", "search", "", ("mnist",)), Job("a.tuned", "a", "tuned", "", ("mnist",),
                                                                   ("a.search",))]
    assert longest_chain(search, {"a.search": Estimate(400.0, ""), "a.tuned": Estimate(50.0, "")}, 4) == 150.0


def _digits_lab(out: Path) -> list[str]:
    return ["--preset", "tiny", "--backends", "lightning", "--sections", "1", "--mnist-dataset", "digits",
            "--out", str(out), "--no-spread-seed"]


def test_estimates_from_another_lab_folder_and_a_missing_one_refused(tmp_path, capsys):
    other, plan = tmp_path / "quick-lab", tmp_path / "plan.json"
    _run(other, "first_cnn", "lightning", train=100, epochs=1, flops=1000, seconds=10.0)
    lab = _digits_lab(tmp_path / "lab")
    code, out, _ = call_main(main, [*lab, "--plan", str(plan), "--estimates-from", f"{tmp_path / 'none'},{other}"],
                             capsys)
    assert code == 2 and not plan.exists()
    code, out, _ = call_main(main, [*lab, "--plan", str(plan), "--estimates-from", str(other)], capsys)
    assert code == 0 and "estimated time:" in out and "the lab: 4 job(s)" in out
    entries = {e["id"]: e for e in json.loads(plan.read_text())["entries"]}
    assert entries["lightning.first_cnn"]["estimate_s"] > 0
    assert str(other.resolve()) in entries["lightning.first_cnn"]["estimate_from"]
    assert entries["lightning.mlp"]["estimate_s"] is None and "--estimates-from" not in \
        entries["lightning.mlp"]["command"]  # a flag of the lab alone: its steps do not take it


def test_a_missing_estimates_folder_is_one_sentence(tmp_path, capsys):
    code, _, err = call_main(main, [*_digits_lab(tmp_path / "lab"), "--plan", str(tmp_path / "p.json"),
                                    "--estimates-from", str(tmp_path / "none")], capsys)
    assert code == 2 and err.count("\n") == 1 and "--estimates-from" in err and "Traceback" not in err


def test_worker_silence_reaches_the_search_and_does_not_change_the_lab(tmp_path, capsys, monkeypatch):
    lab, plan = _digits_lab(tmp_path / "lab"), tmp_path / "plan.json"
    code, _, err = call_main(main, [*lab, "--worker-silence", "0", "--plan", str(plan)], capsys)
    assert code == 2 and err.count("\n") == 1 and "--worker-silence" in err and not plan.exists()
    assert main([*lab, "--worker-silence", "7.5", "--devices", "2", "--plan", str(plan)]) == 0
    entries = {e["id"]: e for e in json.loads(plan.read_text())["entries"]}
    assert entries["lightning.search"]["command"][-6:] == ["--worker-silence", "7.5", "--devices", "2", "--step",
                                                           "lightning.search"]
    seen = []

    def fake_search(base, opts):  # what the step's search would run with; nothing trains
        seen.append(opts)
        return SimpleNamespace(folder=tmp_path, rows=[])

    monkeypatch.setattr(tuned, "run_search", fake_search)
    assert main([*lab, "--worker-silence", "7.5", "--step", "lightning.search"]) == 0
    assert main([*lab, "--step", "lightning.search"]) == 0  # a step without it is the same lab, not refused
    assert [opts.worker_silence for opts in seen] == [7.5, 60.0]


def test_the_pools_progress_uses_the_same_estimates(tmp_path):
    from lab.pipeline.pool import Pool

    lab, other = _lab(tmp_path / "out", "full", ["mnist"]), tmp_path / "other"
    _run(other, "first_cnn", "lightning", train=100, epochs=10, flops=_flops(MNIST, model="first_cnn"), seconds=30.0)
    pool = Pool(lab, build_jobs(lab), ["cpu0"], [], others=[other])
    assert pool.progress.guess == {"lightning.first_cnn": pytest.approx(120.0)}
