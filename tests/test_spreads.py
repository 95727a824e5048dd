"""Each lab section judged against its own run-to-run spread: its baseline trained again with seed + 1."""
from __future__ import annotations

import re

import numpy as np
import pytest
from test_analysis import fake_results
from test_compare import make_run

from lab.pipeline.plan import BASELINES, PRESETS, experiments, spread_key
from lab.pipeline.whole_lab import write_report
from lab.pipeline.writeup import section_spreads
from lab.records.results import PREDICTIONS_FILE
from lab.reports.report import FIGURES_DIR

SEED = 5
LABELS = np.arange(400) % 3  # the test set every fake run was tested on (400 images: one is 0.25 points)


def test_each_section_measures_its_spread_on_its_baseline_with_the_next_seed():
    cifar = {"dataset": "folder", "data_dir": "x"}
    for section, baseline in BASELINES.items():
        exps = {exp.key: exp for exp in experiments(section, PRESETS["quick"], {"dataset": "digits"}, cifar)}
        again = exps[spread_key(section)]
        assert again.seed_offset == 1 and again.settings == exps[baseline].settings and exps[baseline].seed_offset == 0
        without = experiments(section, PRESETS["quick"], {"dataset": "digits"}, cifar, spread=False)
        assert [exp.key for exp in without] == [key for key in exps if key != spread_key(section)]
    assert {spread_key(s) for s in BASELINES} == {"first_cnn_next_seed", "cifar_cnn_next_seed",
                                                 "from_scratch_next_seed"}
    sections_2_and_3 = [next(e for e in experiments(s, PRESETS["quick"], {}, cifar) if e.key == "cifar_cnn_next_seed")
                        for s in ("cifar", "augmentation")]
    assert sections_2_and_3[0].settings == sections_2_and_3[1].settings  # one run, reused by the second section


def _run(root, backend: str, key: str, accuracy: float, seed: int = SEED):
    """A finished run of `key` with a test accuracy, its predictions on LABELS."""
    hyperparameters = {**fake_results()["hyperparameters"], "seed": seed}
    run_dir = make_run(root / f"{key}-{seed}", backend, experiment=f"{key}-folder", hyperparameters=hyperparameters,
                       test={"loss": 0.5, "accuracy": accuracy}, split_sizes={"test": len(LABELS)})
    np.savez(run_dir / PREDICTIONS_FILE, probs=np.eye(3)[LABELS], labels=LABELS)
    (run_dir / FIGURES_DIR).mkdir()
    for name in ("curves", "confusion_matrix"):  # the report links them; their pixels do not matter here
        (run_dir / FIGURES_DIR / f"{name}.png").touch()
    return run_dir


def _lab(root, accuracies: dict) -> dict:
    """runs[backend][section][key] from {backend: {section: {key: accuracy}}}; a key ending in _next_seed is
    trained with SEED + 1."""
    made = {}  # sections 2 and 3 share their runs, as the lab's reuse makes them do

    def run(backend, key, accuracy):
        if (backend, key) not in made:
            made[backend, key] = _run(root / backend, backend, key, accuracy, SEED + key.endswith("_next_seed"))
        return made[backend, key]
    return {backend: {section: {key: run(backend, key, acc) for key, acc in keys.items()}
                      for section, keys in sections.items()} for backend, sections in accuracies.items()}


def _accuracies(with_cifar_spread: bool) -> dict:
    """The first CNN's spread is 0.50 points (Keras), CIFAR's 6.00 (Lightning); Keras and Lightning's CIFAR CNN
    are 3 points apart: beyond the first CNN's spread, within CIFAR's."""
    def backend(first, first_again, cifar, cifar_again, augmented):
        cifar_runs = {"cifar_cnn": cifar, **({"cifar_cnn_next_seed": cifar_again} if with_cifar_spread else {})}
        return {"mnist": {"first_cnn": first, "mlp": 0.80, "first_cnn_next_seed": first_again},
                "cifar": dict(cifar_runs), "augmentation": {**cifar_runs, "cifar_cnn_augmented": augmented}}
    return {"keras": backend(0.900, 0.905, 0.50, 0.52, 0.51), "lightning": backend(0.910, 0.912, 0.47, 0.53, 0.52)}


def _report(tmp_path, runs) -> str:
    path = write_report(tmp_path / "lab", "quick", ["mnist", "cifar", "augmentation"], runs, {}, [])
    return path.read_text()


def _sentence(report: str, start: str) -> str:
    return re.search(re.escape(start) + r"[^\n]*", report).group(0)


def test_the_cifar_sections_are_judged_by_the_cifar_spread_not_the_first_cnns(tmp_path):
    runs = _lab(tmp_path / "runs", _accuracies(with_cifar_spread=True))
    spreads = section_spreads(runs, ["mnist", "cifar", "augmentation"])
    assert spreads["mnist"].points == pytest.approx(0.5) and spreads["cifar"].points == pytest.approx(6.0)
    assert spreads["cifar"].how == "cifar_cnn, seed 5 vs 6, the larger change of Keras and PyTorch"
    report = _report(tmp_path, runs)
    cifar = _sentence(report, "cifar_cnn: Keras is more accurate than PyTorch Lightning: 50.00% against 47.00%")
    assert cifar.endswith("The 3.00-point difference is within noise: section 2's run-to-run spread is 6.00 points "
                          "(cifar_cnn, seed 5 vs 6, the larger change of Keras and PyTorch).")
    first = _sentence(report, "first_cnn: Keras is less accurate than PyTorch Lightning")
    assert "beyond section 1's run-to-run spread of 0.50 points (first_cnn, seed 5 vs 6" in first
    augmented = _sentence(report, "The augmented model is more accurate than the model without augmentation: 52.00%")
    assert "within noise: section 3's run-to-run spread is 6.00 points (cifar_cnn, seed 5 vs 6" in augmented
    assert "Trained again with seed 6 (other initial weights, batch order and validation split), everything else " \
           "the same, the CIFAR-10 CNN reaches 53.00% against 47.00% with seed 5: 6.00 points apart" in report
    assert "first CNN" not in cifar + augmented and "section 1" not in cifar + augmented


def test_an_old_lab_without_the_new_runs_says_the_spread_is_unknown_and_trains_nothing(tmp_path):
    runs = _lab(tmp_path / "runs", _accuracies(with_cifar_spread=False))
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "runs").rglob("*"))
    report = _report(tmp_path, runs)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "runs").rglob("*")) == before
    cifar = _sentence(report, "cifar_cnn: Keras is more accurate than PyTorch Lightning: 50.00% against 47.00%")
    assert cifar.endswith("Section 2's run-to-run spread is unknown (this lab has no cifar_cnn run with the next "
                          "seed: it was made with --no-spread-seed or before each section measured its own spread; "
                          "run the lab again without --no-spread-seed to add it), so this difference may be noise: "
                          "a second seed would measure it.")
    augmented = _sentence(report, "The augmented model is more accurate than the model without augmentation")
    assert "Section 3's run-to-run spread is unknown" in augmented and "beyond" not in augmented
    assert "beyond section 1's run-to-run spread of 0.50 points" in report  # section 1 still has its own
    assert report.count("Trained again with seed 6") == 2  # section 1's, once per backend
