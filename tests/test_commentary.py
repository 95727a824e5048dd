"""The report's commentary: computed from synthetic predictions and histories whose answers are known, and
different when the data differ."""
from __future__ import annotations

import numpy as np
import pytest
from test_analysis import fake_results, table_rows
from test_compare import make_run

from lab.pipeline.plan import PRESETS, SPREAD_KEY, experiments
from lab.pipeline.versus import versus_part
from lab.pipeline.whole_lab import build_parser
from lab.pipeline.writeup import section_spread
from lab.reports import commentary as c
from lab.reports.analysis import confusion_counts, worst_classified
from lab.reports.comparison import compare_runs
from lab.reports.report import WORST_COLUMNS, write_run_outputs

NAMES = ["cat", "dog", "bird", "fish"]


def predictions(pairs: list[tuple[int, int, int]], true_prob: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(probs, labels) holding count images of class true predicted as pred, for each (true, pred, count)."""
    probs, labels = [], []
    for true, pred, count in pairs:
        for _ in range(count):
            row = np.full(len(NAMES), 0.0)
            row[pred] = 1.0 if true == pred else 1 - true_prob
            row[true] += 0.0 if true == pred else true_prob
            probs.append(row)
            labels.append(true)
    return np.array(probs), np.array(labels)


def history(val_losses, train_losses=None, val_accs=None) -> list[dict]:
    n = len(val_losses)
    train_losses = train_losses or [1.0 / e for e in range(1, n + 1)]
    val_accs = val_accs or [0.5 + 0.01 * e for e in range(1, n + 1)]
    return [{"epoch": e, "train/loss": tl, "train/acc": 0.9, "val/loss": vl, "val/acc": va, "time/epoch_s": 1.0}
            for e, (tl, vl, va) in enumerate(zip(train_losses, val_losses, val_accs), start=1)]


# --- the confusion matrix ----------------------------------------------------------------------------------------

CONFUSED = [(0, 0, 20), (1, 1, 15), (2, 2, 9), (3, 3, 12), (1, 0, 6), (0, 1, 2), (2, 3, 2), (3, 2, 1)]


def test_most_confused_pairs_and_recalls():
    counts = confusion_counts(*predictions(CONFUSED), len(NAMES))
    assert c.confused_pairs(counts) == [(1, 0, 6), (0, 1, 2), (2, 3, 2)]  # equal counts: (true, pred) order
    assert np.allclose(c.class_recalls(counts), [20 / 22, 15 / 21, 9 / 11, 12 / 13])
    text = c.confusion_comment(counts, NAMES)
    assert "'dog' taken for 'cat' 6 times, 'cat' taken for 'dog' twice and 'bird' taken for 'fish' twice" in text
    assert "; 91% of the 11 errors." in text
    assert "Best recall: 'fish' (92.31%, 12 of 13)" in text and "worst: 'dog' (71.43%, 15 of 21)" in text


def test_recall_ties_and_a_perfect_matrix():
    counts = np.array([[9, 1, 0], [0, 10, 0], [1, 0, 9]])
    assert "Best recall: 'dog' (100.00%, 10 of 10); worst: 'cat' and 'bird' (90.00% each)." in c.recall_comment(
        counts, NAMES[:3])
    assert "no class was taken for another" in c.confusion_comment(np.diag([3, 4, 5]), NAMES[:3])
    assert c.confusion_comment(np.array([[3, 1], [0, 4]]), NAMES[:2]) == (
        "The only error: one 'cat' image taken for 'dog'. Best recall: 'dog' (100.00%, 4 of 4); "
        "worst: 'cat' (75.00%, 3 of 4).")
    empty_class = np.array([[3, 1, 0], [0, 0, 0], [0, 0, 4]])  # no test image of 'dog': no recall for it
    assert np.isnan(c.class_recalls(empty_class)[1])
    assert "worst: 'cat' (75.00%, 3 of 4)" in c.recall_comment(empty_class, NAMES[:3])


# --- the curves -----------------------------------------------------------------------------------------------

def test_overfitting_onset_by_the_rule():
    # lowest validation loss at epoch 3, above it from epoch 4 on while the training loss falls
    assert c.overfitting_onset(history([1.0, 0.8, 0.6, 0.65, 0.7, 0.9])) == (4, 3)
    # a one-epoch rise is not overfitting; a later two-epoch rise is
    assert c.overfitting_onset(history([1.0, 0.8, 0.85, 0.7, 0.6, 0.62, 0.64, 0.5])) == (6, 2)
    assert c.overfitting_onset(history([1.0, 0.8, 0.85, 0.7, 0.6, 0.5])) is None
    # the validation loss rises but so does the training loss: not overfitting
    assert c.overfitting_onset(history([1.0, 0.8, 0.9, 1.0], train_losses=[1.0, 0.8, 0.9, 1.0])) is None
    # above the running minimum without rising every epoch still counts: 0.7 < 0.75 but > 0.6
    assert c.overfitting_onset(history([0.9, 0.6, 0.75, 0.7, 0.55])) == (3, 2)


def test_curves_comment_names_the_epochs():
    text = c.curves_comment(history([1.0, 0.8, 0.6, 0.65, 0.7, 0.9], val_accs=[0.5, 0.6, 0.7, 0.8, 0.8, 0.7]))
    assert text.startswith("Best validation epoch: 4 of 6 (80.00% validation accuracy, loss 0.6500).")
    assert "Overfitting from epoch 4: the validation loss rose above its minimum of epoch 3 (0.6000)" in text
    assert "to the last epoch" in text
    assert "training accuracy is 20.00 points above the validation accuracy (90.00% against 70.00%)" in text
    assert "No overfitting: the curves never show" in c.curves_comment(history([1.0, 0.8, 0.6, 0.5]))
    assert "Overfitting cannot show in 2 epochs: it needs" in c.curves_comment(history([1.0, 1.2]))



def test_the_augmentation_lesson_follows_the_curves():
    spread = c.Spread(0.5, "seeds")
    underfit, overfit = history([1.0, 0.8, 0.6]), history([1.0, 0.8, 0.6, 0.65, 0.7])
    early = c.augmentation_lesson(underfit, underfit, -1.5, spread)
    assert early.startswith("The lesson cannot show yet") and "after 3 epochs" in early
    assert "train-validation gap is 37.00 points" in early  # 90% train against 53% validation at the last epoch
    assert c.augmentation_lesson(overfit, overfit, 2.0, spread).startswith("Augmentation pays off here: +2.00")
    later = c.augmentation_lesson(overfit, overfit, 0.3, spread)
    assert later.startswith("The model without augmentation overfits from epoch 4") and "+0.30 points" in later
    assert "not beyond the run-to-run spread of 0.50 points (seeds)" in later
    assert "+0.30 points, and the run-to-run spread is unknown" in c.augmentation_lesson(overfit, overfit, 0.3, None)

# --- the worst images ---------------------------------------------------------------------------------------

def test_worst_ten_grouped_by_true_and_predicted_class():
    # 10 mistakes: 5 cats taken for dogs, 3 birds for dogs, 1 fish for cat, 1 dog for bird
    probs, labels = predictions([(0, 1, 5), (2, 1, 3), (3, 0, 1), (1, 2, 1), (0, 0, 30)])
    worst = worst_classified(probs, labels)
    assert c.shared_groups(w.true for w in worst) == [(0, 5), (2, 3)]
    assert c.shared_groups(w.pred for w in worst) == [(1, 8)]
    assert c.worst_comment(worst, NAMES) == (
        "Among these 10 images, 5 are truly 'cat' and 3 are truly 'bird'; 8 are predicted as 'dog'. "
        "The commonest mistake among them, 'cat' taken for 'dog', occurs 5 times.")
    tied = worst_classified(*predictions([(0, 1, 2), (0, 2, 2), (3, 1, 1)]))
    assert c.worst_comment(tied, NAMES) == (
        "Among these 5 images, 4 are truly 'cat'; 3 are predicted as 'dog' and 2 are predicted as 'bird'. "
        "The commonest mistakes among them, 'cat' taken for 'dog' and 'cat' taken for 'bird', occur twice each.")
    spread_out = worst_classified(*predictions([(0, 1, 1), (1, 2, 1), (2, 3, 1)]))
    assert c.worst_comment(spread_out, NAMES) == (
        "Among these 3 images, no two share a true class; no two share a predicted class.")


# --- comparisons -------------------------------------------------------------------------------------------

def test_seed_spread_is_the_larger_change_at_least_one_image():
    assert c.seed_spread([(97.0, 96.5), (95.0, 96.2)]) == pytest.approx(1.2)
    assert c.seed_spread([(97.0, 97.0)], n_test=400) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        c.seed_spread([])


def test_the_sentences_change_when_the_data_change():
    first = {"accuracy": 97.50, "time_s": 30.0}
    spread = c.Spread(0.40, "two seeds")
    beyond = c.versus_sentence("the tuned CNN", first, "the first CNN", {"accuracy": 96.00, "time_s": 20.0}, spread)
    within = c.versus_sentence("the tuned CNN", first, "the first CNN", {"accuracy": 97.30, "time_s": 60.0}, spread)
    assert beyond.startswith("The tuned CNN is more accurate than the first CNN: 97.50% against 96.00%")
    assert "(+1.50 points); it is slower, training in 1.50x the time" in beyond
    assert "The 1.50-point difference is beyond the run-to-run spread of 0.40 points (two seeds)." in beyond
    assert "(+0.20 points); it is faster, training in 0.50x the time" in within
    assert "The 0.20-point difference is within noise: the run-to-run spread is 0.40 points" in within
    worse = c.versus_sentence("the tuned CNN", {"accuracy": 95.0, "time_s": 20.0}, "the first CNN", first, None)
    assert "is less accurate than the first CNN" in worse and "(-2.50 points)" in worse
    assert "spread is unknown" in worse and "beyond" not in worse and "within noise" not in worse
    tie = c.versus_sentence("Keras", first, "PyTorch Lightning", dict(first), spread)
    assert "reach the same test accuracy (97.50%); Keras is as fast" in tie and "noise" not in tie


def test_gap_and_seed_sentences():
    assert c.gap_comment("A", 1.5, "B", 6.0) == (
        "The last epoch's train-validation gap is +1.50 points for A against +6.00 for B: smaller by 4.50 points.")
    assert c.gap_comment("A", None, "B", 6.0) == ""
    same = c.seed_comment("the first CNN", 0, 97.5, 97.2, same_test_set=True)
    assert same == ("Trained again with seed 1 (other initial weights, batch order and validation split), everything "
                    "else the same, the first CNN reaches 97.20% against 97.50% with seed 0: 0.30 points apart, a "
                    "measure of the run-to-run spread.")
    assert "validation and test splits" in c.seed_comment("the first CNN", 3, 90.0, 91.0, same_test_set=False)


# --- in the reports ---------------------------------------------------------------------------------------

def test_run_report_comments_under_each_figure(tmp_path):
    probs, labels = predictions(CONFUSED)
    results = fake_results(class_names=NAMES, history=history([1.0, 0.8, 0.6, 0.65, 0.7, 0.9]))
    write_run_outputs(tmp_path, results, probs, labels, np.zeros((len(labels), 4, 4, 1), np.uint8), NAMES)
    report = (tmp_path / "report.md").read_text()
    curves, matrix, worst = (report.index(f'src="figures/{n}.png"') for n in ("curves", "confusion_matrix", "worst10"))
    assert curves < report.index("Overfitting from epoch 4") < matrix
    assert matrix < report.index("'dog' taken for 'cat' 6 times") < report.index("worst classified images")
    assert table_rows(report, WORST_COLUMNS)
    assert report.index("| Rank |") < report.index("Among these 10 images, 6 are truly 'dog'") < worst


def test_comparison_md_says_the_spread_is_unknown(tmp_path):
    make_run(tmp_path / "runs", "lightning")
    make_run(tmp_path / "runs", "keras", test={"loss": 0.2, "accuracy": 0.9821}, timing={"total_s": 61.0})
    text = compare_runs([tmp_path / "runs"], tmp_path / "out")["markdown"].read_text()
    assert "`first_cnn-digits / keras (version_0)` is more accurate than `first_cnn-digits / lightning" in text
    assert "(+5.78 points); it is faster, training in 0.10x the time" in text and "spread is unknown" in text


def lab_runs(root, accuracies: dict[str, tuple[float, float]]) -> dict:
    """runs[backend]["mnist"] with the first CNN (seed 5) and its next-seed run at the given accuracies."""
    def run(folder, backend, seed, accuracy):
        hyperparameters = {**fake_results()["hyperparameters"], "seed": seed}
        return make_run(root / folder, backend, test={"loss": 0.1, "accuracy": accuracy},
                        hyperparameters=hyperparameters)
    return {backend: {"mnist": {"first_cnn": run("a", backend, 5, a), SPREAD_KEY: run("b", backend, 6, b)}}
            for backend, (a, b) in accuracies.items()}


def test_the_lab_measures_its_spread_with_a_second_seed(tmp_path):
    cnn = experiments("mnist", PRESETS["quick"], {"dataset": "digits"}, {})
    again = next(exp for exp in cnn if exp.key == SPREAD_KEY)
    first = next(exp for exp in cnn if exp.key == "first_cnn")
    assert again.seed_offset == 1 and again.settings == first.settings
    assert SPREAD_KEY not in [e.key for e in experiments("mnist", PRESETS["quick"], {"dataset": "digits"}, {},
                                                         spread=False)]
    assert build_parser().parse_args([]).spread_seed and not build_parser().parse_args(
        ["--no-spread-seed"]).spread_seed

    runs = lab_runs(tmp_path, {"keras": (0.970, 0.965), "lightning": (0.950, 0.962)})
    spread = section_spread(runs, "mnist")
    assert spread.points == pytest.approx(1.2)
    assert spread.how == "first_cnn, seed 5 vs 6, the larger change of Keras and PyTorch"
    assert not section_spread({b: {"mnist": {"first_cnn": r["mnist"]["first_cnn"]}} for b, r in runs.items()},
                              "mnist").known
    text = "\n".join(versus_part(runs, ["mnist"], tmp_path, {"mnist": spread}))
    assert "first_cnn: Keras is more accurate than PyTorch Lightning: 97.00% against 95.00%" in text
    assert "The 2.00-point difference is beyond section 1's run-to-run spread of 1.20 points" in text
    assert f"{SPREAD_KEY}: Keras is more accurate than PyTorch Lightning: 96.50% against 96.20%" in text
    assert "The 0.30-point difference is within noise" in text


def test_a_lesson_shows_only_beyond_the_spread():
    spread = c.Spread(0.5, "seeds")
    assert c.lesson_comment("the gain from transfer", 2.0, spread, "x") == \
        "The gain from transfer shows here: +2.00 points, beyond the run-to-run spread of 0.50 points (seeds)."
    assert c.lesson_comment("the gain from transfer", 0.4, spread, "use fewer images") == (
        "The gain from transfer does not show in this run (+0.40 points, within the run-to-run spread of 0.50 "
        "points (seeds)): use fewer images.")
    assert "(-1.00 points): more" in c.lesson_comment("the search's improvement", -1.0, spread, "more")
    assert "(+2.00 points, and the run-to-run spread is unknown)" in c.lesson_comment("it", 2.0, None, "more")


def test_one_best_epoch_rule_for_the_report_the_tested_weights_and_the_trials():
    from lab.records.recording import best_epoch, best_row
    from lab.tuning.trials import trial_metrics

    history = [{"epoch": e, "val/acc": acc, "val/loss": 0.5, "train/loss": 0.4, "train/acc": 0.9, "time/epoch_s": 1}
               for e, acc in ((1, 0.5), (2, 0.8), (3, 0.8), (4, None), (5, 0.7))]
    assert best_row(history)["epoch"] == best_epoch(history) == 2  # the earliest of equals; a None is skipped
    assert best_epoch(history, after=2) == 3 and best_epoch(history, after=5) is None
    assert "Best validation epoch: 2 of 5" in c.curves_comment(history)
    assert trial_metrics(history, 2, 10)["best_epoch"] == 3
