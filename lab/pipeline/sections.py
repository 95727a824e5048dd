"""Each lab section's part of the report, for one backend, from that backend's runs (and section 1.4's search)."""
from __future__ import annotations

from pathlib import Path

from lab.pipeline.plan import BASELINES, spread_key
from lab.pipeline.writeup import (
    comparison_table,
    curves_figure,
    rel,
    rows_for,
    run_block,
    same_test_set,
    versus_sentence,
)
from lab.records.results import load_results
from lab.reports.commentary import augmentation_lesson, gap_comment, lesson_comment, seed_comment
from lab.tuning.trials import CSV_FILE, SUMMARY_FILE, best_table, trial_counts


def mnist(backend: str, runs: dict[str, Path], report_dir: Path, search=None, spread=None) -> list[str]:
    cnn, mlp = rows_for([("first CNN", runs["first_cnn"]), ("MLP baseline", runs["mlp"])])
    lines = ["### 1.2. First CNN", "", *run_block(runs["first_cnn"], report_dir), "",
             *next_seed(runs, "mnist", "the first CNN"), "<br>", "",
             "### 1.3. Comparison", "", "The first CNN against the dense (MLP) baseline, same data and epochs.", "",
             comparison_table([mlp, cnn]), "", versus_sentence("first CNN", cnn[1], "MLP baseline", mlp[1], spread),
             "", curves_figure([runs["mlp"], runs["first_cnn"]], report_dir, f"{backend}-mnist-models"), ""]
    if "tuned_cnn" in runs and search is not None:
        lines += ["<br>", "", "### 1.4. Model improvement", "",
                  *improvement(backend, runs, report_dir, search, spread)]
    return lines


def next_seed(runs: dict[str, Path], section: str, name: str) -> list[str]:
    """The section's baseline (`name`) run with the next seed, which measures the section's run-to-run spread (none
    with --no-spread-seed or in a lab made before each section had its own)."""
    baseline, again = BASELINES[section], spread_key(section)
    if baseline not in runs or again not in runs:
        return []
    first, second = (load_results(runs[key]) for key in (baseline, again))
    return [seed_comment(name, first["hyperparameters"]["seed"], 100 * first["test"]["accuracy"],
                         100 * second["test"]["accuracy"], same_test_set(runs[baseline], runs[again])), ""]


def improvement(backend: str, runs: dict[str, Path], report_dir: Path, search, spread=None) -> list[str]:
    """Section 1.4: the keras-tuner search's best trials, and its best model retrained against the first CNN."""
    cnn, tuned = rows_for([("first CNN", runs["first_cnn"]), ("tuned CNN", runs["tuned_cnn"])])
    links = ", ".join(f"[{name}]({rel(search.folder / name, report_dir)})" for name in (SUMMARY_FILE, CSV_FILE))
    return [f"A keras-tuner {search.tuner} search, each trial trained with {backend}: {trial_counts(search.rows)} "
            f"trials ({links}). Search space (model `cnn`): {search.space}.", "",
            best_table(search.rows, 5), "",
            "The best configuration retrained on all the training images, as long as the first CNN:", "",
            comparison_table([cnn, tuned]), "", versus_sentence("tuned CNN", tuned[1], "first CNN", cnn[1], spread),
            lesson_comment("the search's improvement", tuned[1]["accuracy"] - cnn[1]["accuracy"], spread,
                           "a longer search (more trials, more epochs each) would tell more"), "",
            curves_figure([runs["first_cnn"], runs["tuned_cnn"]], report_dir, f"{backend}-mnist-tuned"), ""]


def cifar(backend: str, runs: dict[str, Path], report_dir: Path, search=None, spread=None) -> list[str]:
    return [*run_block(runs["cifar_cnn"], report_dir, heading="###"), "", *next_seed(runs, "cifar", "the CIFAR-10 CNN")]


def augmentation(backend: str, runs: dict[str, Path], report_dir: Path, search=None, spread=None) -> list[str]:
    plain, augmented = rows_for([("without augmentation", runs["cifar_cnn"]),
                                 ("with augmentation", runs["cifar_cnn_augmented"])])
    lines = ["The CIFAR-10 CNN trained without and with data augmentation (training batches only). "
             "The train-val gap is the last epoch's training accuracy minus its validation accuracy.", "",
             comparison_table([plain, augmented], with_gap=True), "",
             *next_seed(runs, "augmentation", "the model without augmentation"),
             versus_sentence("augmented model", augmented[1], "model without augmentation", plain[1], spread),
             gap_comment("the augmented model", augmented[1]["gap"], "the model without augmentation",
                         plain[1]["gap"]),
             augmentation_lesson(*(load_results(runs[k])["history"] for k in ("cifar_cnn", "cifar_cnn_augmented")),
                                 augmented[1]["accuracy"] - plain[1]["accuracy"], spread), "",
             curves_figure([runs["cifar_cnn"], runs["cifar_cnn_augmented"]], report_dir, f"{backend}-augmentation")]
    grid = runs["cifar_cnn_augmented"] / "figures" / "augmented.png"
    if grid.is_file():
        lines += ["", "What the model sees (augmented training images):", "",
                  f'<img src="{rel(grid, report_dir)}" height="300" />']
    return lines + [""]


def transfer(backend: str, runs: dict[str, Path], report_dir: Path, search=None, spread=None) -> list[str]:
    """Section 4: pretrained on one half of the classes, fine-tuned on the other against from scratch."""
    first, second = (", ".join(load_results(runs[key])["class_names"]) for key in ("pretrained", "fine_tuned"))
    pretrained, tuned, scratch = rows_for([("pretrained (first half)", runs["pretrained"]),
                                           ("fine-tuned (second half)", runs["fine_tuned"]),
                                           ("from scratch (second half)", runs["from_scratch"])])
    return [f"No ImageNet weights are needed: the CIFAR-10 CNN is pretrained on the classes {first}, then trained "
            f"on the other classes ({second}) in two ways at the same budget: fine-tuned from the pretrained weights "
            "(a new head trained on the frozen network, then every layer), or from random initialisation.", "",
            comparison_table([pretrained, tuned, scratch]), "",
            *next_seed(runs, "transfer", "the model trained from scratch"),
            versus_sentence("fine-tuned model", tuned[1], "model trained from scratch", scratch[1], spread),
            lesson_comment("the gain from transfer", tuned[1]["accuracy"] - scratch[1]["accuracy"], spread,
                           "transfer pays most on a small target set, where training from scratch has too few images"),
            "",
            curves_figure([runs["fine_tuned"], runs["from_scratch"]], report_dir, f"{backend}-transfer"), "",
            *run_block(runs["fine_tuned"], report_dir)]


RENDERERS = {"mnist": mnist, "cifar": cifar, "augmentation": augmentation, "transfer": transfer}
