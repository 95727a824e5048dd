"""Worst-10 selection, the per-run report's tables, and its figures."""
from __future__ import annotations

import numpy as np
import pytest

from lab.records.results import REQUIRED_FIELDS
from lab.reports.analysis import confusion_counts, row_normalised, worst_classified
from lab.reports.plots import png_to_array
from lab.reports.report import WORST_COLUMNS, hyperparameters_table, write_run_outputs

CLASSES = ["cat", "dog", "bird"]


def fake_history(epochs: int = 4, scale: float = 1.0) -> list[dict]:
    return [{"epoch": e, "train/loss": scale / e, "train/acc": 1 - 0.5 / e, "val/loss": 1.2 * scale / e,
             "val/acc": 1 - 0.6 / e, "time/epoch_s": 2.0} for e in range(1, epochs + 1)]


def fake_results(**overrides) -> dict:
    """A valid results dict (every REQUIRED_FIELD) as a finished run writes it."""
    epochs = overrides.pop("epochs", 4)
    dataset = overrides.get("dataset", "digits")
    results = {
        "schema": 1, "experiment": f"first_cnn-{dataset}", "backend": "lightning", "model": "first_cnn",
        "dataset": dataset, "data_source": "bundled with scikit-learn",
        "hyperparameters": {"batch_size": 32, "filters": 32, "kernel_size": [3, 3], "stride": 1, "padding": "valid",
                            "epochs": epochs, "model": "first_cnn", "dataset": dataset},
        "params": {"total": 12345, "trainable": 12000},
        "test": {"loss": 0.31524, "accuracy": 0.92431},
        "timing": {"total_s": 622.8412, "first_epoch_s": 3.5, "steady_epoch_s": 2.25, "epoch_s": [3.5] + [2.25] * 3,
                   "images_per_s": 1500.4},
        "history": fake_history(epochs), "epochs_run": epochs, "class_names": CLASSES,
        "machine": {"cpu": "Test CPU", "cores": 2, "ram_gib": 8.0, "gpus": [], "os": "Linux",
                    "versions": {"python": "3.11.7"}},
        "finished_at": "2024-05-01T12:00:00",
    }
    results.update(overrides)
    assert set(REQUIRED_FIELDS) <= set(results)
    return results


def wrong(true_prob: float) -> list[float]:
    """Probabilities of an image of class 0 predicted as class 1."""
    return [true_prob, 1 - true_prob, 0.0]


# index: 0, 3 and 8 are correct with a low probability; the others are class 0 predicted as 1.
HAND_PROBS = np.array([[0.34, 0.33, 0.33], wrong(0.40), wrong(0.05), [0.2, 0.7, 0.1], wrong(0.30), wrong(0.10),
                       wrong(0.45), wrong(0.20), [0.3, 0.3, 0.4], wrong(0.01), wrong(0.35), wrong(0.15), wrong(0.25),
                       wrong(0.02), wrong(0.49)])
HAND_LABELS = np.array([0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0])
HAND_WORST = [1, 10, 4, 12, 7, 11, 5, 2, 13, 9]  # rank 10 first; 6 and 14 are wrong but less badly


def test_worst_picks_lowest_true_prob_among_misclassified():
    worst = worst_classified(HAND_PROBS, HAND_LABELS)
    assert [w.index for w in worst] == HAND_WORST
    assert [w.rank for w in worst] == list(range(10, 0, -1))
    assert not {0, 3, 8} & {w.index for w in worst}  # correct ones, however unsure, never appear
    last = worst[-1]
    assert (last.true, last.pred, last.true_prob, last.pred_prob) == (0, 1, 0.01, 0.99)


def test_worst_ties_broken_by_index():
    probs = np.array([wrong(0.2), wrong(0.3), wrong(0.1), [1, 0, 0], wrong(0.1), wrong(0.1)])
    worst = worst_classified(probs, np.zeros(6, dtype=int))
    assert [(w.rank, w.index) for w in worst] == [(5, 1), (4, 0), (3, 5), (2, 4), (1, 2)]


def test_worst_fewer_than_k_and_none():
    probs = np.array([wrong(0.3), [0.9, 0.1, 0], wrong(0.2), [0.6, 0.4, 0]])
    labels = np.zeros(4, dtype=int)
    assert [(w.rank, w.index) for w in worst_classified(probs, labels)] == [(2, 0), (1, 2)]
    assert [w.index for w in worst_classified(probs, labels, k=1)] == [2]
    assert worst_classified(probs[[1, 3]], labels[[1, 3]]) == []


def test_confusion_counts_rows_are_true_classes():
    counts = confusion_counts(HAND_PROBS, HAND_LABELS)
    assert counts.tolist() == [[1, 12, 0], [0, 1, 0], [0, 0, 1]]
    assert row_normalised(np.array([[1, 3], [0, 0]])).tolist() == [[0.25, 0.75], [0.0, 0.0]]


def table_rows(markdown: str, header: tuple[str, ...]) -> list[list[str]]:
    """Cells of the Markdown table whose header row is header."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if [c.strip() for c in line.strip("|").split("|")] == list(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_hyperparameters_table():
    lab_columns = ("Batch Size", "Filters", "Kernel Size", "Stride", "Padding", "Loss", "Accuracy", "Time")
    rows = table_rows(hyperparameters_table(fake_results()), lab_columns)  # the hand-written report's table
    assert rows == [["32", "32", "(3, 3)", "1", "'valid'", "0.3152", "92.43%", "622.84s"]]


def hand_images(rgb: bool = False) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(len(HAND_LABELS), 8, 8, 3 if rgb else 1), dtype=np.uint8)


@pytest.fixture(scope="module")
def run_outputs(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    arrays = write_run_outputs(run_dir, fake_results(), HAND_PROBS, HAND_LABELS, hand_images(), CLASSES)
    return run_dir, arrays


def test_report_worst_table_and_links(run_outputs):
    run_dir, _ = run_outputs
    report = (run_dir / "report.md").read_text()
    rows = table_rows(report, WORST_COLUMNS)
    assert [int(r[1]) for r in rows] == HAND_WORST
    assert rows[0] == ["10", "1", "dog", "cat", "0.4000"]
    assert rows[-1] == ["1", "9", "dog", "cat", "0.0100"]
    for name in ("curves", "confusion_matrix", "worst10"):
        assert f'src="figures/{name}.png"' in report
    assert report.startswith("# first_cnn-digits (lightning)\n")
    assert "Test CPU, 2 cores" in report and "12,345 (12,000 trainable)" in report
    assert "first 3.50s, steady 2.25s" in report


def test_figures_written_and_distinct(run_outputs, tmp_path):
    run_dir, arrays = run_outputs
    assert sorted(arrays) == ["confusion_matrix", "curves", "worst10"]
    for name, array in arrays.items():  # the PNG holds exactly the pixels TensorBoard is given
        assert np.array_equal(png_to_array((run_dir / "figures" / f"{name}.png").read_bytes()), array), name
    assert all(a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] in (3, 4) for a in arrays.values())
    names = list(arrays)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert arrays[a].shape != arrays[b].shape or not np.array_equal(arrays[a], arrays[b]), (a, b)
    other = write_run_outputs(tmp_path, fake_results(history=fake_history(scale=3.0)), HAND_PROBS, HAND_LABELS,
                              hand_images(rgb=True), CLASSES)
    mine, theirs = arrays["curves"], other["curves"]
    assert mine.shape == theirs.shape and not np.array_equal(mine, theirs)


def test_report_with_few_and_no_misclassified(tmp_path):
    few = write_run_outputs(tmp_path, fake_results(), HAND_PROBS[:3], HAND_LABELS[:3], hand_images()[:3], CLASSES)
    report = (tmp_path / "report.md").read_text()
    assert [r[:2] for r in table_rows(report, WORST_COLUMNS)] == [["2", "1"], ["1", "2"]]
    assert "Only 2 test images were misclassified" in report and "worst10" in few
    assert (tmp_path / "figures" / "worst10.png").is_file()

    correct = np.eye(3)[[0, 1, 2]]
    arrays = write_run_outputs(tmp_path, fake_results(), correct, np.arange(3), hand_images()[:3], CLASSES)
    report = (tmp_path / "report.md").read_text()
    assert "worst10" not in arrays and not (tmp_path / "figures" / "worst10.png").exists()
    assert "All 3 test images were classified correctly" in report and "| Rank |" not in report


def test_hyperparameters_table_shows_the_settings_that_shape_each_model():
    results = fake_results()
    results["hyperparameters"].update(model="cifar_cnn", width=16, depth=2, dense_units=64)
    assert table_rows(hyperparameters_table(results), ("Batch Size", "Width", "Depth", "Dense Units", "Loss",
                                                       "Accuracy", "Time")) == [
        ["32", "16", "2", "64", "0.3152", "92.43%", "622.84s"]]
