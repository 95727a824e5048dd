"""The lab's time estimates, for --plan and the pool's progress: a rate measured on earlier finished work (seconds
per unit of work) times each job's planned work, where work = training images x epochs x forward FLOPs per image
(lab.specs.architectures.forward_flops, the figure results.json records). The rate comes from the first of:
the same kind (experiment key, or "search") on the same backend; the same kind on the other backend; the same model
(cifar_cnn, cnn, ...) on the same backend; the same model on either. Else "no estimate"."""
from __future__ import annotations

import csv
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from datamodules.subset import parse_classes
from lab.config.settings import make_settings
from lab.pipeline.jobs import SEARCH, TUNED, Job, Lab
from lab.pipeline.tuned import search_setup, typed_row
from lab.records.results import RESULTS_FILE
from lab.specs.architectures import forward_flops
from lab.specs.models import model_spec
from lab.tuning.search import SEARCH_FILE
from lab.tuning.space import MODEL, SHAPE_FIELDS, Constraint, SearchSpace, overrides_of
from lab.tuning.trials import CSV_FILE

NO_ESTIMATE = "no estimate"


@dataclass(frozen=True)
class DataSize:
    """A dataset as the lab loaded it up front (whole_lab._check_data), what a job's work needs of it."""

    train: int
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...]  # training images per class
    dataset: str = ""
    image_size: int | None = None

    def images(self, classes: str | None) -> tuple[int, int]:
        """(training images, classes) under a class filter: its classes' share of the training images."""
        if not classes:
            return self.train, len(self.class_names)
        chosen = parse_classes(classes, self.class_names)
        share = sum(self.class_counts[c] for c in chosen) / max(1, sum(self.class_counts))
        return round(self.train * share), len(chosen)


@dataclass(frozen=True)
class Measured:
    """One earlier finished run, or search, and its work."""

    kind: str
    backend: str
    model: str
    work: float
    seconds: float
    folder: Path  # the lab folder it is in


@dataclass(frozen=True)
class Estimate:
    seconds: float | None
    source: str  # where the rate came from, or NO_ESTIMATE


def job_estimates(lab: Lab, jobs: list[Job], folders: list[Path]) -> dict[str, Estimate]:
    """Each job's estimate, from the finished work in `folders` (the lab's --out first)."""
    measured = [m for folder in _unique(folders) for m in measured_in(folder, lab.sizes.get("mnist"))]
    result = {}
    for job in jobs:
        model, work = planned_work(lab, job)
        result[job.id] = estimate(measured, job.key, job.backend, model, work)
    return result


def estimate(measured: list[Measured], kind: str, backend: str, model: str, work: float | None) -> Estimate:
    if work is None:
        return Estimate(None, NO_ESTIMATE)
    levels = [(lambda m: m.kind == kind and m.backend == backend, f"{backend} {kind}"),
              (lambda m: m.kind == kind, kind),
              (lambda m: m.model == model and m.backend == backend, f"{backend} {model} models"),
              (lambda m: m.model == model, f"{model} models")]
    for matches, what in levels:
        found = [m for m in measured if matches(m)]
        if found:
            rate = sum(m.seconds for m in found) / sum(m.work for m in found)
            where = ", ".join(dict.fromkeys(str(m.folder) for m in found))
            noun = "search" if kind == SEARCH else "run"
            count = f"1 {noun}" if len(found) == 1 else f"{len(found)} {noun}{'es' if kind == SEARCH else 's'}"
            return Estimate(rate * work, f"{count} of {what} in {where}, scaled by work")
    return Estimate(None, NO_ESTIMATE)


# ---- the work of earlier runs --------------------------------------------------------------------------------

def measured_in(folder: Path, mnist: DataSize | None) -> list[Measured]:
    """The finished runs in a lab folder (results.json) and its searches on the dataset of `mnist` (trials.csv:
    a search's trials' images are only known for the dataset this lab loaded)."""
    found = [m for path in sorted(Path(folder).glob(f"*/*/version_*/{RESULTS_FILE}")) if (m := _run(path, folder))]
    if mnist is not None:
        found += [m for path in sorted(Path(folder).glob(f"tune-*/*/tuning/{CSV_FILE}"))
                  if (m := _search(path, folder, mnist))]
    return found


def _run(path: Path, folder: Path) -> Measured | None:
    try:
        results = json.loads(path.read_text())
        hp = results["hyperparameters"]
        name, dataset = hp["name"], hp["dataset"]
        work = results["split_sizes"]["train"] * results["epochs_run"] * results["flops_per_image"]
        seconds = float(results["timing"]["total_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (name and name.endswith(f"-{dataset}") and work and seconds):
        return None
    return Measured(name[:-len(dataset) - 1], results.get("backend", path.parts[-3]), hp["model"], work, seconds,
                    Path(folder))


def _search(path: Path, folder: Path, mnist: DataSize) -> Measured | None:
    try:
        saved = json.loads((path.parent / SEARCH_FILE).read_text())
        with open(path, newline="") as f:
            rows = [typed_row(row) for row in csv.DictReader(f)]
    except (OSError, ValueError):
        return None
    if (saved.get("dataset"), saved.get("image_size")) != (mnist.dataset, mnist.image_size):
        return None
    images = min(round(mnist.train * saved.get("trial_fraction", 1.0)), saved.get("max_trial_images") or mnist.train)
    done = [row for row in rows if row["status"] == "COMPLETED" and row["epochs_run"] and row["time_s"]]
    work = sum(images * row["epochs_run"] * _flops(overrides_of(row), mnist) for row in done)
    if not work:
        return None
    return Measured(SEARCH, saved.get("backend", path.parts[-3]), MODEL, work,
                    sum(row["time_s"] for row in done), Path(folder))


# ---- the planned work of a job -------------------------------------------------------------------------------

def planned_work(lab: Lab, job: Job) -> tuple[str, float | None]:
    """(its model, its work), None where the lab did not load its data."""
    size = lab.sizes.get("mnist" if "mnist" in job.sections else "cifar")
    if size is None:
        return "", None
    if job.key in (SEARCH, TUNED):
        base, opts = search_setup(job.backend, lab.first_cnn(), lab.preset)
        flops = mean_flops(opts.space, size, opts.max_params)
        if job.key == TUNED:  # its configuration comes out of the search: the mean of the space
            return MODEL, size.train * base.epochs * flops
        images = min(size.train, opts.max_trial_images or size.train)
        return MODEL, opts.max_trials * opts.max_epochs * images * flops  # early stopping can only shorten it
    settings = make_settings({**job.experiment.settings, **lab.common})
    images, classes = size.images(settings.classes)
    images = min(images, settings.train_images or images)
    flops = forward_flops(model_spec(settings, size.input_shape, classes), size.input_shape)
    return settings.model, images * (settings.epochs + settings.finetune_epochs) * flops


def mean_flops(space: SearchSpace, size: DataSize, max_params: int | None) -> float:
    """The mean forward FLOPs of the space's models that fit (a random search draws them evenly)."""
    constraint = Constraint(size.input_shape, len(size.class_names), max_params)
    choices = {name: getattr(space, name) for name in SHAPE_FIELDS}
    choices["blocks"] = range(space.blocks[0], space.blocks[1] + 1)
    rest = {name: getattr(space, name)[0] for name in ("dropout", "optimizer", "lr", "batch_size")}
    models = [{**rest, **dict(zip(choices, combo))} for combo in itertools.product(*choices.values())]
    flops = [_flops(overrides_of(m), size) for m in models if constraint.fits(m)]
    return sum(flops) / max(1, len(flops))


def _flops(overrides: dict, size: DataSize) -> int:
    settings = make_settings({k: v for k, v in overrides.items() if v is not None})
    return forward_flops(model_spec(settings, size.input_shape, len(size.class_names)), size.input_shape)


def _unique(folders: list[Path]) -> list[Path]:
    return list(dict.fromkeys(Path(f).resolve() for f in folders))
