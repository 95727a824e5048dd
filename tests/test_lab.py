"""run_lab.py end to end on tiny data: every section, both backends, one complete report, work reused."""
import re
from pathlib import Path

import numpy as np
import pytest
from test_datasets import SHARED_CIFAR

from core.errors import LabError
from lab.config.settings import make_settings
from lab.pipeline.plan import PRESETS, class_halves, parse_sections
from lab.pipeline.versus import versus_part
from lab.pipeline.whole_lab import main
from lab.records.results import RESULTS_FILE, load_results
from lab.run.reuse import ensure_run


def _colour_tree(root, per_class=24, size=16):
    """A learnable RGB image tree: each class has its own dominant colour."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, count in (("train", per_class), ("test", per_class // 3)):
        for label, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]):
            folder = root / part / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                noise = rng.integers(-40, 40, (size, size, 3))
                image = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{i}.png")
    return root


@pytest.mark.slow  # every section on both backends, each run in a process of its own: minutes on two cores
def test_tiny_lab_end_to_end(tmp_path, lab_cache, capsys):
    data = _colour_tree(tmp_path / "colours")
    args = ["--preset", "tiny", "--mnist-dataset", "digits", "--cifar-dataset", "folder", "--data-dir", str(data),
            "--out", str(tmp_path / "lab")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^done \S+ in ", out, re.MULTILINE)) == 2 * 13  # 12 runs and a search per backend
    report = (tmp_path / "lab" / "lab-report.md").read_text()
    for heading in ("### 1.2. First CNN", "### 1.3. Comparison", "### 1.4. Model improvement",
                    "## 2. Convolutional Neural Network on CIFAR10", "## 3. Data augmentation",
                    "## 4. Transfer learning / fine-tuning on CIFAR10", "#### Transfer learning"):
        assert report.count(heading) == 2, heading
    for heading in ("# Keras", "# PyTorch", "# Keras against PyTorch Lightning"):
        assert heading in report, heading
    assert "class0, class1" in report and "class2, class3" in report
    assert "| X |" not in report and "TODO" not in report and "nan" not in report
    assert "`digits`" in report and "`folder`" in report
    assert report.count("Trained again with seed 1") == 4 * 2  # each section's spread, on each backend
    backends_parts = report.split("# Keras against PyTorch Lightning")[0]  # each section's sentences name its spread
    parts = re.split(r"^## (\d)\. ", backends_parts, flags=re.MULTILINE)
    named = [(number, re.findall(r"section (\d)'s run-to-run spread", text)) for number, text in zip(parts[1::2],
                                                                                                  parts[2::2])]
    assert all(set(spreads) <= {number} for number, spreads in named) and any(spreads for _, spreads in named), named
    assert "Best validation epoch" in report and "run-to-run spread" in report
    assert report.count("| tuned CNN |") == 2 and report.count("| fine-tuned (second half) |") == 2
    for link in re.findall(r'<img src="([^"]+)"', report):
        assert (tmp_path / "lab" / link).is_file(), link
    assert main(args) == 0  # the second time everything is reused
    assert "done " not in capsys.readouterr().out


def test_the_versus_part_sets_keras_against_lightning(tmp_path):
    from test_compare import make_run

    runs = {backend: {"cifar": {"cifar_cnn": make_run(tmp_path / backend, backend, timing={"total_s": seconds})}}
            for backend, seconds in (("keras", 30.0), ("lightning", 20.0))}
    lines = versus_part(runs, ["cifar"], tmp_path)
    table = "\n".join(lines)
    assert lines[0] == "# Keras against PyTorch Lightning"
    assert "| cifar_cnn | 92.43% | 92.43% | 30.00s | 20.00s | 1.50x | 12,345 / 12,345 |" in table
    link = re.search(r'<img src="([^"]+)"', table).group(1)
    assert (tmp_path / link).is_file()


def test_sections_are_parsed_and_bad_ones_refused():
    assert parse_sections("3,1") == ["mnist", "augmentation"]
    assert parse_sections("all") == ["mnist", "cifar", "augmentation", "transfer"]
    with pytest.raises(LabError, match="no section"):
        parse_sections("5")


def test_transfer_splits_the_classes_in_two_halves():
    assert class_halves(10) == ("0,1,2,3,4", "5,6,7,8,9")
    assert class_halves(5) == ("0,1", "2,3,4")
    with pytest.raises(LabError, match="at least 4 classes"):
        class_halves(3)


def test_missing_data_fails_before_any_training(tmp_path, capsys):
    code = main(["--mnist-dataset", "folder", "--mnist-data-dir", str(tmp_path / "nothing"), "--sections", "1",
                 "--out", str(tmp_path / "lab")])
    assert code == 2
    assert "nothing" in capsys.readouterr().err
    assert not (tmp_path / "lab").exists()


@pytest.mark.parametrize("backend", ["lightning", "keras"])
def test_an_interrupted_experiment_is_resumed_and_a_finished_one_reused(backend, tmp_path, lab_cache):
    settings = make_settings({"dataset": "digits", "model": "mlp", "hidden": 16, "layers": 1, "epochs": 1,
                              "out": str(tmp_path), "name": "mlp-digits"})
    run_dir, what = ensure_run(backend, settings)
    assert what == "ran"
    finished = load_results(run_dir)
    (run_dir / RESULTS_FILE).unlink()  # as if killed after its last checkpoint, before its results
    assert ensure_run(backend, settings) == (run_dir, "resumed")
    assert load_results(run_dir)["history"] == finished["history"]
    assert load_results(run_dir)["test"] == finished["test"]
    assert ensure_run(backend, settings) == (run_dir, "reused")


def test_a_run_made_on_another_device_is_the_same_experiment(tmp_path):
    import json

    from lab.run.reuse import find_matching

    settings = make_settings({"out": str(tmp_path), "name": "first_cnn-digits"})  # the lab's: accelerator auto
    run_dir = tmp_path / "first_cnn-digits" / "lightning" / "version_0"
    run_dir.mkdir(parents=True)
    saved = {**settings.to_dict(), "accelerator": "cpu", "devices": "1"}  # a lab made with --accelerator cpu
    (run_dir / "settings.json").write_text(json.dumps(saved))
    assert find_matching(settings, "lightning") == run_dir
    assert find_matching(make_settings({**settings.to_dict(), "gpus": 1}), "lightning") == run_dir
    assert find_matching(make_settings({**settings.to_dict(), "precision": "bf16-mixed"}), "lightning") is None


def test_each_preset_searches_in_a_folder_of_its_own_and_a_changed_search_gets_run_labs_advice(tmp_path):
    from lab.pipeline.tuned import search
    from lab.tuning.search import SEARCH_FILE, search_folder

    first = {"dataset": "digits", "model": "first_cnn", "epochs": 1, "batch_size": 32, "out": str(tmp_path)}
    folder = search_folder(make_settings({**first, "name": "tune-digits-quick"}), "lightning")
    folder.mkdir(parents=True)
    (folder / SEARCH_FILE).write_text('{"tuner": "bayesian"}')  # an earlier search there, on other settings
    with pytest.raises(LabError) as error:
        search("lightning", first, {**PRESETS["quick"], "name": "quick"}, rerun=False)
    assert str(folder) in str(error.value) and '"bayesian" there, "random" now' in str(error.value)
    assert "add --rerun" in str(error.value) and "--overwrite" not in str(error.value)


def test_the_pools_progress_counts_the_time_left_from_each_jobs_estimate():
    import io

    from rich.console import Console

    from lab.pipeline.lab_progress import PoolProgress

    guess = {"keras.first_cnn": 60.0, "lightning.first_cnn": 60.0}
    progress = PoolProgress(4, 2, guess, Console(file=io.StringIO(), width=200))
    progress.status({"keras.first_cnn": ("keras.first_cnn", ["cpu0"], 0.0)},
                    ["lightning.first_cnn", "keras.mlp", "lightning.mlp"])
    assert "0/4 done; training: keras.first_cnn on cpu0; about 30 s left on 2 device(s), plus 2 job(s) with no " \
           "estimate" in progress.console.file.getvalue()
    progress.ended("keras.mlp", "keras.mlp", "done", 10.0)
    assert progress.guess["keras.mlp"] == 10.0 and "done keras.mlp in 10 s [1/4]" in progress.console.file.getvalue()


# --- the quick preset shows each section's lesson (slow: real data, minutes) -----------------------------------

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _accuracy(out: Path, experiment: str, backend: str) -> float:
    (results,) = (out / experiment / backend).glob(f"*/{RESULTS_FILE}")
    return 100 * load_results(results.parent)["test"]["accuracy"]


def _gains(out: Path, dataset: str, pairs) -> dict:
    return {(backend, better): _accuracy(out, f"{better}-{dataset}", backend)
            - _accuracy(out, f"{worse}-{dataset}", backend)
            for backend in ("keras", "lightning") for better, worse in pairs}


@pytest.mark.slow  # section 1 of `make demo`, both backends: 5 minutes on two cores
def test_on_the_digits_the_quick_search_beats_the_first_cnn_by_a_point(tmp_path):
    out = tmp_path / "demo"
    assert main(["--preset", "quick", "--mnist-dataset", "digits", "--sections", "1", "--out", str(out)]) == 0
    gains = _gains(out, "digits", [("tuned_cnn", "first_cnn")])
    print(gains)
    assert all(gain >= 1.0 for gain in gains.values()), gains


@pytest.mark.slow  # the whole quick lab on real data: 20 minutes on two cores
def test_on_real_data_the_quick_lab_shows_its_lessons_or_says_why_not(tmp_path):
    if not SHARED_CIFAR.is_file() or not FASHION.is_dir():
        pytest.skip("the shared CIFAR-10 JPEGs or Debian's Fashion-MNIST are absent")
    out = tmp_path / "lab"
    assert main(["--preset", "quick", "--mnist-dataset", "fashion_mnist", "--mnist-data-dir", str(FASHION),
                 "--cifar-dataset", "folder", "--cifar-data-dir", str(SHARED_CIFAR), "--out", str(out)]) == 0
    report = (out / "lab-report.md").read_text()
    gains = {**_gains(out, "fashion_mnist", [("tuned_cnn", "first_cnn")]),
             **_gains(out, "folder", [("fine_tuned", "from_scratch"), ("cifar_cnn_augmented", "cifar_cnn")])}
    print(gains)
    said = {"tuned_cnn": ("The search's improvement does not show in this run",),
            "fine_tuned": ("The gain from transfer does not show in this run",),
            "cifar_cnn_augmented": ("The lesson cannot show yet", "a few more epochs would tell")}
    for (backend, experiment), gain in gains.items():
        assert gain >= 1.0 or any(text in report for text in said[experiment]), (backend, experiment, gain)
