"""Each lab section's part of the report, for one backend, from that backend's runs."""
from __future__ import annotations

from pathlib import Path

from lab.lab_report import comparison_table, curves_figure, rel, rows_for, run_block, versus_sentence


def mnist(backend: str, runs: dict[str, Path], report_dir: Path) -> list[str]:
    cnn, mlp = rows_for([("first CNN", runs["first_cnn"]), ("MLP baseline", runs["mlp"])])
    lines = ["### 1.2. First CNN", "", *run_block(runs["first_cnn"], report_dir), "", "<br>", "",
             "### 1.3. Comparison", "", "The first CNN against the dense (MLP) baseline, same data and epochs.", "",
             comparison_table([mlp, cnn]), "", versus_sentence("first CNN", cnn[1], "MLP baseline", mlp[1]), "",
             curves_figure([runs["mlp"], runs["first_cnn"]], report_dir, f"{backend}-mnist-models"), ""]
    return lines


def cifar(backend: str, runs: dict[str, Path], report_dir: Path) -> list[str]:
    return run_block(runs["cifar_cnn"], report_dir, heading="###")


def augmentation(backend: str, runs: dict[str, Path], report_dir: Path) -> list[str]:
    plain, augmented = rows_for([("without augmentation", runs["cifar_cnn"]),
                                 ("with augmentation", runs["cifar_cnn_augmented"])])
    lines = ["The CIFAR-10 CNN trained without and with data augmentation (training batches only). "
             "The train-val gap is the last epoch's training accuracy minus its validation accuracy.", "",
             comparison_table([plain, augmented], with_gap=True), "",
             versus_sentence("augmented model", augmented[1], "model without augmentation", plain[1]), "",
             curves_figure([runs["cifar_cnn"], runs["cifar_cnn_augmented"]], report_dir, f"{backend}-augmentation")]
    grid = runs["cifar_cnn_augmented"] / "figures" / "augmented.png"
    if grid.is_file():
        lines += ["", "What the model sees (augmented training images):", "",
                  f'<img src="{rel(grid, report_dir)}" height="300" />']
    return lines + [""]


RENDERERS = {"mnist": mnist, "cifar": cifar, "augmentation": augmentation}
