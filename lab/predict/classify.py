"""New images classified by a finished run, of either backend: its network loaded from one of its checkpoints,
each image brought to the network's input as the run's own images were (grayscale or RGB, the run's --resize
policy, datamodules.folder.read_image), one softmax (lab.reports.metrics)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from core import frameworks
from core.errors import LabError
from datamodules.folder import IMAGE_SUFFIXES, read_image
from lab.config.data import load_data
from lab.config.settings import make_settings
from lab.records.checkpoint_files import BEST, LAST, checkpoint_file
from lab.records.results import load_results
from lab.records.rundirs import load_settings
from lab.reports.metrics import softmax
from lab.run.backend import LoadedNetwork, get_backend
from lab.specs.networks import describe

CHECKPOINTS = (BEST, LAST)
BATCH = 256  # images decoded and classified at a time, so that a large folder need not fit in memory


@dataclass(frozen=True)
class Prediction:
    file: str
    size: tuple[int, int]  # the image's own width and height
    top: list[tuple[str, float]]  # (class, probability), most probable first


@dataclass(frozen=True)
class Predictions:
    rows: list[Prediction]
    skipped: list[str]  # why each unreadable image was left out (--skip-bad)
    input_size: tuple[int, int]  # the network's width and height
    checkpoint: Path


def classify(run_dir: str | Path, inputs: Iterable[str | Path], checkpoint: str | None = None, top_k: int = 3,
             skip_bad: bool = False, data_dir: str | None = None) -> Predictions:
    """The top_k classes of every image of `inputs` (files, and folders searched for images) under the run's
    `checkpoint` (best or last; None: the weights its test used)."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    files = image_files(inputs)
    if top_k < 1:
        raise LabError(f"--top-k must be at least 1, got {top_k}.")
    which = checkpoint or results["test"].get("weights", LAST)
    path = find_checkpoint(run_dir, results["backend"], which)
    network = load_network(results["backend"], path, old_description(run_dir, path, data_dir))
    classes = [str(name) for name in results["class_names"]]
    policy = load_settings(run_dir).get("resize", "stretch")
    rows, skipped = [], []
    for start in range(0, len(files), BATCH):
        images, sizes = [], []
        for file in files[start:start + BATCH]:
            try:
                image, size = read_image(file, network.input_shape, policy)
            except LabError as e:
                if not skip_bad:
                    raise LabError(f"{e.args[0].rstrip('.')}, or pass --skip-bad to go on without it.") from None
                skipped.append(str(file))
                continue
            images.append(image)
            sizes.append((str(file), size))
        if images:
            probs = softmax(network.logits(np.stack(images)))
            rows += [Prediction(file, size, top_classes(p, classes, top_k)) for (file, size), p in zip(sizes, probs)]
    if not rows:
        raise LabError(f"none of the {len(files)} images could be decoded; nothing was written.")
    height, width = network.input_shape[:2]
    return Predictions(rows, skipped, (width, height), path)


def image_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Each file as given, and each folder's images (.png, .jpg, .jpeg, .bmp) at any depth, sorted, hidden files
    and folders left out as a folder dataset's are."""
    files = []
    for given in map(Path, inputs):
        if given.is_dir():
            found = sorted(p for p in given.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(given).parts))
            if not found:
                raise LabError(f"folder {given} holds no .png/.jpg/.jpeg/.bmp images; give image files or a folder "
                               "of them.")
            files += found
        elif given.is_file():
            files.append(given)
        else:
            raise LabError(f"{given} does not exist; give image files or folders of images.")
    if not files:
        raise LabError("no image given; name image files or folders after the run folder.")
    return files


def find_checkpoint(run_dir: Path, backend: str, which: str) -> Path:
    if which not in CHECKPOINTS:
        raise LabError(f"--checkpoint must be best or last, got {which!r}.")
    path = checkpoint_file(run_dir, backend, which)
    if path is None:
        other = LAST if which == BEST else BEST
        raise LabError(f"{run_dir} has no {which} checkpoint; pass --checkpoint {other}.")
    return path


def load_network(backend: str, checkpoint: Path, description: Callable[[], dict]) -> LoadedNetwork:
    if backend == "lightning":
        frameworks.without_tensorflow()  # as train_lightning.py: this process never runs Keras
    return get_backend(backend).load_network(checkpoint, description)


def old_description(run_dir: Path, checkpoint: Path, data_dir: str | None) -> Callable[[], dict]:
    """The run's network description, rebuilt from its data (read from `data_dir` when given): a Lightning
    checkpoint written before checkpoints held it needs the data's mean and std."""
    def description() -> dict:
        values = load_settings(run_dir)
        if data_dir is not None:
            values["data_dir"] = data_dir
        settings = make_settings(values)
        try:
            return describe(settings, load_data(settings))
        except LabError as e:
            raise LabError(f"{checkpoint} was written before checkpoints held their network, so loading it needs "
                           f"the run's {settings.dataset} data to recompute its mean and std, which could not be "
                           f"read ({e.args[0].rstrip('.')}); pass --data-dir with that dataset.") from None
    return description


def top_classes(probs: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [(classes[i], float(probs[i])) for i in order]
