"""Keep only some classes of a dataset (e.g. to pretrain on five CIFAR-10 classes, fine-tune on the rest)."""
from __future__ import annotations

import numpy as np

from datamodules.base import ImageSet, RawDataset
from lab.errors import LabError


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
