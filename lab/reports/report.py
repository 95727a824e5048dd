"""The per-run report: figures/*.png and report.md in the run folder, in the lab report's format."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.io import write_text_atomic
from datamodules.batching import epoch_order
from lab.config.machine import describe
from lab.records.results import achieved_gflops
from lab.reports import commentary, plots
from lab.reports.analysis import WorstImage, confusion_counts, worst_classified
from lab.specs import augmentation

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings

REPORT_FILE = "report.md"
FIGURES_DIR = "figures"
AUGMENTED_FIGURE = f"{FIGURES_DIR}/augmented.png"  # written during training by --save-augmented
# The lab's table is the first CNN's; other models show the settings that shape them instead.
SHAPE_KEYS = {"first_cnn": ("filters", "kernel_size", "stride", "padding"), "mlp": ("hidden", "layers"),
              "cifar_cnn": ("width", "depth", "dense_units"),
              "cnn": ("blocks", "filters", "kernel_size", "padding", "batch_norm", "pool", "dropout", "dense_units")}
ZOO_KEYS = ("image_size", "unfreeze")
TRANSFER_COLUMNS = ("Phase", "Epochs", "Learning rate", "Trainable params", "Frozen params", "Val. accuracy",
                    "Test accuracy", "Time")
WORST_COLUMNS = ("Rank", "Image idx", "Pred. cat.", "Act. cat.", "P(act.)")
WORST_DEFINITION = (
    "An image counts as badly classified if it is misclassified and the probability the model gives to its "
    "actual category is low: these are the misclassified test images with the lowest predicted probability "
    "for their actual category, rank 1 being the lowest (equal probabilities: the lower image index ranks worse).")


def markdown_table(columns, rows) -> str:
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join(":---:" for _ in columns) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _setting(value) -> str:
    """As the lab report writes settings: (3, 3) for a kernel, 'valid' for a padding."""
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(str(v) for v in value) + ")"
    return f"'{value}'" if isinstance(value, str) else str(value)


def _num(value, fmt: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{fmt}}{unit}"


def hyperparameters_table(results: dict) -> str:
    hp, test = results["hyperparameters"], results["test"]
    keys = ("batch_size", *SHAPE_KEYS.get(hp.get("model"), ZOO_KEYS))
    columns = [key.replace("_", " ").title() for key in keys] + ["Loss", "Accuracy", "Time"]
    row = [_setting(hp.get(k)) for k in keys]
    row += [_num(test["loss"], ".4f"), _num(100 * test["accuracy"], ".2f", "%"),
            _num(results["timing"]["total_s"], ".2f", "s")]
    return markdown_table(columns, [row])


def _prob(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def worst_table(worst: list[WorstImage], class_names) -> str:
    rows = [(w.rank, w.index, class_names[w.pred], class_names[w.true], _prob(w.true_prob)) for w in worst]
    return markdown_table(WORST_COLUMNS, rows)


def summary_lines(results: dict) -> list[str]:
    timing, params = results["timing"], results["params"]
    hp, run = results["hyperparameters"], results["epochs_run"]
    planned = None if hp.get("epochs") is None else hp["epochs"] + (hp.get("finetune_epochs") or 0)
    side = hp.get("image_size")
    size = f", seen at {side}x{side} pixels (--resize {hp.get('resize', 'stretch')})" if side else ""
    return [
        f"- Model: {results['model']}",
        f"- Dataset: {results['dataset']} ({results['data_source']}){size}",
        f"- Parameters: {params['total']:,} ({params['trainable']:,} trainable)",
        f"- FLOPs per image: {flops_text(results.get('flops_per_image'))}",
        f"- Epochs: {run}" + (f" of {planned} planned" if planned not in (None, run) else ""),
        *_tested_line(results),
        _devices_line(results),
        f"- Epoch time: first {_num(timing.get('first_epoch_s'), '.2f', 's')}, "
        f"steady {_num(timing.get('steady_epoch_s'), '.2f', 's')}",
        f"- Images per second: {_num(timing.get('images_per_s'), ',.0f')}{_achieved(results)}",
        f"- Inference: {inference_text(results)}",
        f"- Finished at: {results['finished_at']}",
    ]


def flops_text(flops: int | None) -> str:
    """E.g. '3.63 GFLOPs forward'; runs made before FLOPs were recorded say so."""
    if flops is None:
        return "not recorded"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}FLOPs forward"
    return f"{flops} FLOPs forward"


# how each backend's network was called for results.json "inference"
INFERENCE_WAYS = {"lightning": "the network in eval mode under torch.inference_mode",
                  "keras": "the model called directly, training=False"}


def inference_text(results: dict) -> str:
    """How fast the tested network infers (results.json "inference", lab.records.inference_timing), or why it was
    not measured; runs made before it was measured, or with --profile false, say so."""
    figures = results.get("inference")
    if figures is None:
        why = results.get("inference_skipped") or (
            "--profile false" if results["hyperparameters"].get("profile") is False else None)
        return f"not measured ({why})" if why else "not measured"
    way = INFERENCE_WAYS.get(results["backend"], results["backend"])
    return (f"{figures['ms_per_image_b1']:.3g} ms per image at batch 1 (median of {figures['calls_b1']} calls, p95 "
            f"{figures['p95_ms_b1']:.3g} ms), {_num(figures['images_per_s_b256'], ',.0f')} images/s at batch 256; "
            f"{way}, on {figures['machine']}")


def _achieved(results: dict) -> str:
    gflops = achieved_gflops(results)
    return "" if gflops is None else f" in training, {gflops:,.3g} GFLOP/s achieved (3x the forward FLOPs per image)"


def _tested_line(results: dict) -> list[str]:
    """Which weights scored the test set; runs of earlier versions, tested with the last, did not say."""
    test = results["test"]
    if "weights" not in test:
        return []
    if test["weights"] == "last":
        return [f"- Tested weights: the last epoch's (epoch {test['weights_epoch']}){recalibration_text(test)}"]
    phases = (results.get("extra") or {}).get("phases") or []
    of = f" of the {phases[-1]['name']} phase" if len(phases) > 1 else ""
    return [f"- Tested weights: the best checkpoint's (epoch {test['weights_epoch']}, the highest validation "
            f"accuracy{of}){recalibration_text(test)}"]


def recalibration_text(test: dict) -> str:
    """results.json test.bn_recalibration in words, after the test accuracy; "" when --bn-recalibration was off."""
    done = test.get("bn_recalibration")
    if done is None:
        return ""
    if not done["layers"]:
        return "; --bn-recalibration: the network has no batch norm that trains, nothing recomputed"
    layers = "its batch norm's" if done["layers"] == 1 else f"its {done['layers']} batch norms'"
    return (f"; {layers} running statistics recomputed after training from "
            f"{done['images']:,} training images in {done['seconds']:.2f} s (--bn-recalibration): test accuracy "
            f"{done['accuracy_before']:.2%} before, {test['accuracy']:.2%} after")


def _devices_line(results: dict) -> str:
    """E.g. '- Devices: cpu x2, batch 32 (16 per device), precision bf16-mixed'; runs of earlier versions recorded
    no layout."""
    layout, hp = results.get("distributed") or {}, results["hyperparameters"]
    batch = hp.get("batch_size")
    if layout.get("world_size", 1) > 1:
        batch = f"{layout['global_batch']} ({layout['per_device_batch']} per device on {layout['world_size']})"
    return f"- Devices: {results.get('device', '-')}, batch {batch}, precision {hp.get('precision', '32')}"


def transfer_section(extra: dict, heading: str = "####") -> list[str]:
    """A transfer run's phases (lab.specs.phases.summarize): accuracy, time and parameters of each."""
    if not extra.get("phases"):
        return []
    info = extra.get("transfer", {})
    size = f" at {info['image_size']}x{info['image_size']} pixels" if info.get("image_size") else ""
    rows = [(p["name"], f"{p['epochs'][0]}-{p['epochs'][1]}", f"{p['lr']:g}", _count(p["trainable_params"]),
             _count(p["frozen_params"]), _num(p["val_acc"] and 100 * p["val_acc"], ".2f", "%"),
             _num(p["test_acc"] and 100 * p["test_acc"], ".2f", "%"), _num(p["time_s"], ".2f", "s"))
            for p in extra["phases"]]
    return [f"{heading} Transfer learning", "",
            f"- Backbone: {info.get('backbone', '-')}{size}, {info.get('blocks', '-')} blocks",
            f"- Initial weights: {info.get('weights', '-')}", f"- Head: {info.get('head', '-')}", "",
            markdown_table(TRANSFER_COLUMNS, rows), "", "<br>", ""]


def _count(value) -> str:
    return "-" if value is None else f"{value:,}"


def worst_section(worst: list[WorstImage], n_test: int, class_names, figure: str | None) -> list[str]:
    if not worst:
        return [f"All {n_test} test images were classified correctly, so no image is badly classified."]
    lines = [WORST_DEFINITION, ""]
    if len(worst) < 10:
        lines += [f"Only {len(worst)} test images were misclassified; all are listed.", ""]
    lines += [worst_table(worst, class_names), "", commentary.worst_comment(worst, class_names), "", "<br>", ""]
    return lines + [f'<img src="{figure}" />']


def render_report(results: dict, worst: list[WorstImage], n_test: int, class_names, figures: dict[str, str],
                  counts: np.ndarray | None = None) -> str:
    """report.md text; figures maps a figure name to its path relative to the run folder."""
    lines = [f"# {results['experiment']} ({results['backend']})", "",
             f"Machine: {describe(results['machine'])}", "",
             *run_sections(results, worst, n_test, class_names, figures, counts=counts)]
    return "\n".join(lines) + "\n"


def run_sections(results: dict, worst: list[WorstImage], n_test: int, class_names, figures: dict[str, str],
                 heading: str = "####", counts: np.ndarray | None = None) -> list[str]:
    """The body of a run's report: results table, curves, confusion matrix, worst images (and augmented
    images), each commented from the data (lab.reports.commentary; the confusion matrix when its counts are
    given); figures maps a figure name to its path relative to where the text will be."""
    confusion = [] if counts is None else [commentary.confusion_comment(counts, class_names), ""]
    lines = [f"{heading} Hyperparameters & Results", "", hyperparameters_table(results), "",
             *summary_lines(results), "", "<br>", "", *transfer_section(results.get("extra") or {}, heading),
             f"{heading} Loss and Accuracy Plot", "", f'<img src="{figures["curves"]}" height="300" />', "",
             commentary.curves_comment(results["history"]), "", "<br>", "",
             f"{heading} Confusion matrix", "", f'<img src="{figures["confusion_matrix"]}" height="300" />', "",
             *confusion, "<br>", "",
             f"{heading} {min(len(worst), 10) or 10} worst classified images", "",
             *worst_section(worst, n_test, class_names, figures.get("worst10"))]
    if "augmented" in figures:
        lines += ["", "<br>", "", f"{heading} Augmented training images", "", f'<img src="{figures["augmented"]}" />']
    return lines


def write_run_outputs(run_dir, results: dict, probs: np.ndarray, labels: np.ndarray, images: np.ndarray,
                      class_names) -> dict[str, np.ndarray]:
    """Write figures/{curves,confusion_matrix,worst10}.png and report.md; return each figure's pixels
    (name -> H x W x 4 uint8), figures/augmented.png included when training wrote one.

    With no misclassified image there is no worst10.png (the report says why) and no "worst10" key.
    """
    run_dir, class_names = Path(run_dir), list(class_names)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    title = f"{results['experiment']} ({results['backend']})"
    worst = worst_classified(probs, labels, k=10)
    counts = confusion_counts(probs, labels, len(class_names))
    boundary = (results.get("extra") or {}).get("phase_boundary_epoch")
    figures = {"curves": plots.curves_figure(results["history"], title, boundary),
               "confusion_matrix": plots.confusion_figure(counts, class_names, title)}
    if worst:
        figures["worst10"] = plots.worst_figure(images, worst, class_names)
    else:  # a rewrite of the same run must not leave an older grid behind
        (run_dir / FIGURES_DIR / "worst10.png").unlink(missing_ok=True)
    arrays = {name: plots.save_png(fig, run_dir / FIGURES_DIR / f"{name}.png") for name, fig in figures.items()}
    if (run_dir / AUGMENTED_FIGURE).is_file():
        arrays["augmented"] = plots.png_to_array(run_dir / AUGMENTED_FIGURE)
    relative = {name: f"{FIGURES_DIR}/{name}.png" for name in arrays}
    write_text_atomic(run_dir / REPORT_FILE, render_report(results, worst, len(labels), class_names, relative,
                                                                  counts))
    return arrays


def save_augmented_grid(run_dir: Path, settings: ExperimentSettings, splits, apply, count: int = 16) -> np.ndarray:
    """figures/augmented.png: images of the first training batch before and after augmentation, as trained on.

    apply(uint8 images, spec, draws) -> the augmented uint8 images as numpy: the backend's own augmentation.
    """
    spec = augmentation.AugmentSpec.from_settings(settings)
    order = epoch_order(len(splits.train), settings.seed, 0, settings.batch_size)[:settings.batch_size]
    draws = augmentation.draw(spec, len(order), settings.seed, 0, splits.input_shape[:2])[:count]
    originals = splits.train.images[order[:count]]
    figure = plots.augmented_figure(originals, apply(originals, spec, draws), spec.describe())
    return plots.save_png(figure, Path(run_dir) / AUGMENTED_FIGURE)
