"""Keep only some classes of a dataset (e.g. to pretrain on five CIFAR-10 classes, fine-tune on the rest),
or only some of its training images (quick runs, small-data transfer learning)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from core.errors import LabError
from datamodules.base import DataSplits, ImageSet, RawDataset
from datamodules.splits import channel_stats


def parse_classes(spec: str, class_names: tuple[str, ...]) -> list[int]:
    """'0,1,2' or 'cat,dog' (or a mix) -> class indices, in the order given."""
    chosen = []
    for item in (part.strip() for part in spec.split(",")):
        if item in class_names:
            chosen.append(class_names.index(item))
        elif item.isdigit() and int(item) < len(class_names):
            chosen.append(int(item))
        else:
            raise LabError(f"--classes names {item!r}, which is not a class of this dataset; "
                           f"its classes are {', '.join(class_names)} (or indices 0 to {len(class_names) - 1}).")
    if len(set(chosen)) != len(chosen) or len(chosen) < 2:
        raise LabError(f"--classes {spec!r} must name at least two different classes, each once.")
    return chosen


def select_classes(raw: RawDataset, spec: str | None) -> RawDataset:
    """The dataset restricted to the classes in spec, relabelled 0..k-1 in that order."""
    if not spec:
        return raw
    chosen = parse_classes(spec, raw.class_names)
    names = tuple(raw.class_names[i] for i in chosen)
    return RawDataset(name=raw.name, train=_keep(raw.train, chosen), test=_keep(raw.test, chosen) if raw.test else None,
                      class_names=names, source=f"{raw.source} (classes {', '.join(names)})")


def _keep(part: ImageSet, chosen: list[int]) -> ImageSet:
    mapping = np.full(int(part.labels.max()) + 1 if len(part) else 1, -1, dtype=np.int64)
    for new, old in enumerate(chosen):
        if old < len(mapping):
            mapping[old] = new
    new_labels = mapping[part.labels]
    mask = new_labels >= 0
    return ImageSet(part.images[mask], new_labels[mask])


def sample_train(splits: DataSplits, count: int | None, seed: int) -> DataSplits:
    """Keep a seeded random `count` of the training images (all of them when count is None or larger);
    validation and test stay whole, the normalisation statistics follow the images kept."""
    if count is None or count >= len(splits.train):
        return splits
    index = np.sort(np.random.default_rng([seed, count]).choice(len(splits.train), count, replace=False))
    train = ImageSet(splits.train.images[index], splits.train.labels[index])
    mean, std = channel_stats(train.images)
    return replace(splits, train=train, mean=mean, std=std,
                   source=f"{splits.source}, {count:,} of its {len(splits.train):,} training images")
