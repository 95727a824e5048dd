"""Sentences that comment a run's results, computed from its data (never canned): the confusion matrix, the
curves, the worst images, and two runs set against each other.

Pure functions over numpy arrays, histories (results.json's "history" rows) and comparison rows
(lab.reports.comparison.run_row: "accuracy" in percent, "time_s"); no backend, no file.

Rules, stated once:
- Overfitting: from some epoch on, the validation loss stays above its running minimum (the lowest validation
  loss of the epochs before) for at least OVERFIT_EPOCHS consecutive epochs, while the training loss falls at
  each of them. The onset is the first epoch of the first such stretch.
- Best validation epoch: the highest validation accuracy, the earliest on ties (the one a best-checkpoint keeps).
- Noise: an accuracy difference is "beyond noise" when it is larger than the run-to-run spread, else "within
  noise"; with no spread measured, the sentence says the spread is unknown and claims nothing.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lab.records.recording import best_row

if TYPE_CHECKING:
    from lab.reports.analysis import WorstImage

OVERFIT_EPOCHS = 2
LISTED = 3  # at most this many pairs, classes or groups named in one sentence


def _q(name) -> str:
    return f"'{name}'"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def _named(indices, class_names) -> str:
    """'a', 'b' and 'c' (and 2 more)."""
    names = [_q(class_names[i]) for i in indices[:LISTED]]
    more = len(indices) - LISTED
    return _join(names) + (f" (and {more} more)" if more > 0 else "")


# --- under the confusion matrix ---------------------------------------------------------------------------------

def confused_pairs(counts: np.ndarray, k: int = LISTED) -> list[tuple[int, int, int]]:
    """The k most frequent mistakes as (true class, predicted class, count), most frequent first; equal counts
    in (true, predicted) order. Only pairs with at least one image."""
    off = np.array(counts, dtype=np.int64)
    np.fill_diagonal(off, 0)
    true, pred = np.nonzero(off)
    order = np.lexsort((pred, true, -off[true, pred]))[:k]
    return [(int(true[i]), int(pred[i]), int(off[true[i], pred[i]])) for i in order]


def class_recalls(counts: np.ndarray) -> np.ndarray:
    """Recall per true class (diagonal over row total); NaN for a class with no test image."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1)
    return np.where(totals > 0, np.diag(counts) / np.maximum(totals, 1), np.nan)


def confusion_comment(counts: np.ndarray, class_names) -> str:
    counts = np.asarray(counts)
    errors = int(counts.sum() - np.trace(counts))
    if errors == 0:
        return f"All {int(counts.sum())} test images lie on the diagonal: no class was taken for another."
    pairs = confused_pairs(counts)
    if errors == 1:
        (true, pred, _), = pairs
        first = f"The only error: one {_q(class_names[true])} image taken for {_q(class_names[pred])}."
    else:
        listed = _join([f"{_q(class_names[t])} taken for {_q(class_names[p])} {_times(c)}" for t, p, c in pairs])
        share = sum(c for _, _, c in pairs) / errors
        first = (f"The most confused pair{'s' * (len(pairs) > 1)} (true -> predicted): {listed}; {share:.0%} of the "
                 f"{errors} errors.")
    return f"{first} {recall_comment(counts, class_names)}"


def recall_comment(counts: np.ndarray, class_names) -> str:
    recalls = class_recalls(counts)
    seen = np.flatnonzero(~np.isnan(recalls))
    best, worst = recalls[seen].max(), recalls[seen].min()
    if best == worst:
        return f"Every class has the same recall, {best:.2%}."
    top, bottom = (seen[recalls[seen] == value].tolist() for value in (best, worst))
    totals = np.asarray(counts).sum(axis=1)

    def detail(indices, value):
        if len(indices) > 1:
            return f"{_named(indices, class_names)} ({value:.2%} each)"
        i = indices[0]
        return f"{_q(class_names[i])} ({value:.2%}, {int(counts[i, i])} of {int(totals[i])})"
    return f"Best recall: {detail(top, best)}; worst: {detail(bottom, worst)}."


# --- under the curves -------------------------------------------------------------------------------------------

def _rows(history: list[dict], *keys: str) -> list[dict]:
    return [row for row in history if all(row.get(key) is not None for key in keys)]


def overfitting_onset(history: list[dict], patience: int = OVERFIT_EPOCHS) -> tuple[int, int] | None:
    """(onset epoch, length of the stretch) by the module's rule, or None where it never holds."""
    rows = _rows(history, "val/loss", "train/loss")
    start = None
    for i in range(1, len(rows) + 1):
        rising = i < len(rows) and (rows[i]["val/loss"] > min(r["val/loss"] for r in rows[:i])
                                    and rows[i]["train/loss"] < rows[i - 1]["train/loss"])
        if rising and start is None:
            start = i
        elif not rising and start is not None:
            if i - start >= patience:
                return rows[start]["epoch"], i - start
            start = None
    return None


def train_val_gap(history: list[dict]) -> float | None:
    """Last epoch's training minus validation accuracy, in percentage points (None if not recorded)."""
    last = history[-1] if history else {}
    if last.get("train/acc") is None or last.get("val/acc") is None:
        return None
    return 100 * (float(last["train/acc"]) - float(last["val/acc"]))


def curves_comment(history: list[dict]) -> str:
    best = best_row(history)
    if best is None:
        return "No validation metrics were recorded, so the curves cannot be commented."
    epochs = len(history)
    lines = [f"Best validation epoch: {best['epoch']} of {epochs} ({best['val/acc']:.2%} validation accuracy"
             + (f", loss {best['val/loss']:.4f})." if best.get("val/loss") is not None else ").")]
    lines.append(overfitting_comment(history))
    gap = train_val_gap(history)
    if gap is not None:
        side = "above" if gap >= 0 else "below"
        lines.append(f"At the last epoch the training accuracy is {abs(gap):.2f} points {side} the validation "
                     f"accuracy ({100 * history[-1]['train/acc']:.2f}% against {100 * history[-1]['val/acc']:.2f}%).")
    return " ".join(lines)


def overfitting_comment(history: list[dict]) -> str:
    rule = (f"the validation loss above its lowest value so far for {OVERFIT_EPOCHS} epochs in a row while the "
            "training loss falls")
    rows = _rows(history, "val/loss", "train/loss")
    if len(rows) <= OVERFIT_EPOCHS:
        return f"Overfitting cannot show in {len(rows)} epoch{'s' * (len(rows) != 1)}: it needs {rule}."
    onset = overfitting_onset(history)
    if onset is None:
        return f"No overfitting: the curves never show {rule}."
    epoch, length = onset
    lowest = min((r for r in rows if r["epoch"] < epoch), key=lambda r: r["val/loss"])
    until = "to the last epoch" if epoch + length - 1 == rows[-1]["epoch"] else f"for {length} epochs"
    return (f"Overfitting from epoch {epoch}: the validation loss rose above its minimum of epoch "
            f"{lowest['epoch']} ({lowest['val/loss']:.4f}) and stayed above it {until} while the training loss "
            "kept falling.")


# --- under the worst-10 table -----------------------------------------------------------------------------------

def shared_groups(classes) -> list[tuple[int, int]]:
    """(class, count) of the classes that occur at least twice, largest group first, then by class index."""
    counts = Counter(int(c) for c in classes)
    return sorted(((c, n) for c, n in counts.items() if n > 1), key=lambda cn: (-cn[1], cn[0]))


def worst_comment(worst: list[WorstImage], class_names) -> str:
    if not worst:
        return ""
    true = _group_part([w.true for w in worst], "true", "truly", class_names)
    pred = _group_part([w.pred for w in worst], "predicted", "predicted as", class_names)
    text = f"Among these {len(worst)} images, {true}; {pred}."
    mistakes = shared_groups(w.true * len(class_names) + w.pred for w in worst)
    if mistakes:
        count = mistakes[0][1]
        top = [divmod(pair, len(class_names)) for pair, n in mistakes if n == count][:LISTED]
        named = _join([f"{_q(class_names[t])} taken for {_q(class_names[p])}" for t, p in top])
        text += (f" The commonest mistake among them, {named}, occurs {_times(count)}." if len(top) == 1 else
                 f" The commonest mistakes among them, {named}, occur {_times(count)} each.")
    return text


def _group_part(classes, kind: str, verb: str, class_names) -> str:
    """E.g. "4 are truly 'cat' and 2 are truly 'dog'", or "no two share a true class"."""
    groups = shared_groups(classes)
    if not groups:
        return f"no two share a {kind} class"
    return _join([f"{count} are {verb} {_q(class_names[c])}" for c, count in groups[:LISTED]])


# --- comparisons ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Spread:
    """The run-to-run spread of test accuracy, in percentage points, and how it was measured (in words). owner
    names whose spread it is ("section 2's"). points is None where it is unknown; how then says why."""

    points: float | None
    how: str
    owner: str = "the"

    @property
    def name(self) -> str:
        return f"{self.owner} run-to-run spread"

    @property
    def known(self) -> bool:
        return self.points is not None


def _known(spread: Spread | None) -> bool:
    return spread is not None and spread.known


def _unknown(spread: Spread | None, why: bool = True) -> str:
    """E.g. "section 2's run-to-run spread is unknown (why)", or "the run-to-run spread is unknown (one run of
    each)"; without the why where the sentence is one of several that weigh the same difference."""
    if spread is None:
        return "the run-to-run spread is unknown" + (" (one run of each)" if why else "")
    return f"{spread.name} is unknown" + (f" ({spread.how})" if why else "")


def seed_spread(pairs: list[tuple[float, float]], n_test: int | None = None) -> float:
    """The spread from runs that differ only in their seed: the largest |accuracy(seed) - accuracy(seed + 1)|
    over the pairs given (one per backend), in points. The larger, not the mean, so that "beyond noise" holds
    on every backend. It is at least one test image (100 / n_test points): two seeds landing on the same
    accuracy do not make a one-image difference meaningful."""
    if not pairs:
        raise ValueError("no pair of runs to measure a spread from")
    floor = 100 / n_test if n_test else 0.0
    return max(floor, *(abs(a - b) for a, b in pairs))


def noise_comment(diff: float, spread: Spread | None) -> str:
    """Whether an accuracy difference (points) is beyond the spread, said honestly, naming the spread."""
    if not _known(spread):
        unknown = _unknown(spread)
        return f"{unknown[:1].upper() + unknown[1:]}, so this difference may be noise: a second seed would measure it."
    size = f"The {abs(diff):.2f}-point difference"
    if abs(diff) > spread.points:
        return f"{size} is beyond {spread.name} of {spread.points:.2f} points ({spread.how})."
    return f"{size} is within noise: {spread.name} is {spread.points:.2f} points ({spread.how})."


def versus_sentence(name: str, mine: dict, other_name: str, other: dict, spread: Spread | None = None) -> str:
    """name set against other_name (noun phrases, e.g. 'the first CNN', 'Keras'): which is more accurate and
    faster, by how much, and whether the accuracy difference is beyond the spread."""
    diff = mine["accuracy"] - other["accuracy"]
    subject = name[:1].upper() + name[1:]
    if round(diff, 2) == 0:
        text = f"{subject} and {other_name} reach the same test accuracy ({mine['accuracy']:.2f}%)"
    else:
        text = (f"{subject} is {'more' if diff > 0 else 'less'} accurate than {other_name}: "
                f"{mine['accuracy']:.2f}% against {other['accuracy']:.2f}% test accuracy ({diff:+.2f} points)")
    text += time_comment(name if round(diff, 2) == 0 else "it", mine["time_s"], other["time_s"], other_name) + "."
    return text if round(diff, 2) == 0 else f"{text} {noise_comment(diff, spread)}"


def time_comment(subject: str, mine_s: float, other_s: float, other_name: str) -> str:
    if not other_s or not mine_s:
        return ""
    ratio = mine_s / other_s
    pace = "as fast" if round(ratio, 2) == 1 else "faster" if ratio < 1 else "slower"
    return (f"; {subject} is {pace}, training in {ratio:.2f}x the time of {other_name} "
            f"({mine_s:.2f}s against {other_s:.2f}s)")


def gap_comment(name: str, mine: float | None, other_name: str, other: float | None) -> str:
    """The last epoch's train-validation gaps (points) of two runs set against each other."""
    if mine is None or other is None:
        return ""
    change = "smaller" if abs(mine) < abs(other) else "larger" if abs(mine) > abs(other) else "as large"
    return (f"The last epoch's train-validation gap is {mine:+.2f} points for {name} against {other:+.2f} for "
            f"{other_name}: {change}" + ("." if change == "as large" else f" by {abs(abs(mine) - abs(other)):.2f} "
                                         "points."))


def lesson_comment(lesson: str, gain: float, spread: Spread | None, remedy: str) -> str:
    """Whether a section's lesson (e.g. "the search's improvement") shows in this run, with the figures;
    `gain` in points, `remedy` what would show it where it does not."""
    title = lesson[:1].upper() + lesson[1:]
    if _known(spread) and gain > spread.points:
        return f"{title} shows here: {gain:+.2f} points, beyond {_spread_figure(spread)}."
    why = (f"{gain:+.2f} points, within {_spread_figure(spread)}" if _known(spread) and gain > 0
           else f"{gain:+.2f} points" + ("" if _known(spread) else f", and {_unknown(spread, why=False)}"))
    return f"{title} does not show in this run ({why}): {remedy}."


def _spread_figure(spread: Spread) -> str:
    """E.g. "section 2's run-to-run spread of 0.42 points (cifar_cnn, seed 0 vs 1)"."""
    return f"{spread.name} of {spread.points:.2f} points ({spread.how})"


def augmentation_lesson(plain: list[dict], augmented: list[dict], gain: float, spread: Spread | None) -> str:
    """What the augmentation section shows, read from the curves: augmentation fights overfitting, so where the
    model trained without it does not overfit yet, the section cannot show it, and says why with the figures.
    `gain`: augmented minus plain test accuracy, in points."""
    beyond = _known(spread) and gain > spread.points
    onset, gap = overfitting_onset(plain), train_val_gap(plain)
    gap_text = "" if gap is None else f" and its train-validation gap is {gap:.2f} points"
    if beyond:
        return f"Augmentation pays off here: {gain:+.2f} test accuracy points, beyond {_spread_figure(spread)}."
    if onset is None:
        return (f"The lesson cannot show yet: augmentation fights overfitting, and after {len(plain)} epochs the "
                "model without it does not overfit (its validation loss has not risen while its training loss "
                f"fell){gap_text}; harder, augmented batches only slow a model that is still underfitting. "
                "Train longer (`--preset full`) to see augmentation narrow the gap.")
    against = f"not beyond {_spread_figure(spread)}" if _known(spread) else f"and {_unknown(spread, why=False)}"
    return (f"The model without augmentation overfits from epoch {onset[0]}{gap_text}, yet augmentation gains "
            f"{gain:+.2f} points, {against}: a few more epochs would tell whether it closes the gap.")


def seed_comment(name: str, seed: int, accuracy: float, next_accuracy: float, same_test_set: bool) -> str:
    """The second-seed run of a model, against the first. The seed also draws the validation split, and the test
    split where a dataset has no official test set (same_test_set False)."""
    drawn = "validation split" if same_test_set else "validation and test splits"
    return (f"Trained again with seed {seed + 1} (other initial weights, batch order and {drawn}), everything "
            f"else the same, {name} reaches {next_accuracy:.2f}% against {accuracy:.2f}% with seed {seed}: "
            f"{abs(next_accuracy - accuracy):.2f} points apart, a measure of the run-to-run spread.")


def ranking_comment(labelled: list[tuple[str, dict]], spread: Spread | None = None) -> str:
    """Runs of one dataset: the most accurate against the runner-up, and the fastest if it is another run."""
    if len(labelled) < 2:
        return ""
    labelled = [(f"`{label}`", row) for label, row in labelled]
    by_accuracy = sorted(labelled, key=lambda lr: -lr[1]["accuracy"])
    (top, top_row), (second, second_row) = by_accuracy[:2]
    text = versus_sentence(top, top_row, second, second_row, spread)
    fastest, fastest_row = min(labelled, key=lambda lr: lr[1]["time_s"])
    if fastest != top and len(labelled) > 2:
        text += f" The fastest run is {fastest} ({fastest_row['time_s']:.2f}s)."
    return text
