"""What run_lab.py runs: the lab's sections, their experiments, and the quick and full presets."""
from __future__ import annotations

from dataclasses import dataclass, field

from lab.errors import LabError

# Section 4 (transfer learning) is not part of run_lab yet: run transfer_compare.py for it.
SECTIONS = {"1": "mnist", "2": "cifar", "3": "augmentation"}
TITLES = {"mnist": "Convolutional Neural Network on MNIST dataset",
          "cifar": "Convolutional Neural Network on CIFAR10 dataset",
          "augmentation": "Data augmentation"}

PRESETS = {
    # minutes on a CPU
    "quick": {"mnist_epochs": 3, "cifar_epochs": 3, "width": 16, "depth": 2, "dense_units": 64,
              "tuner_trials": 3, "tuner_epochs": 2, "finetune_epochs": 2, "augment": {"flip": True, "crop_pad": 2}},
    # the lab's settings
    "full": {"mnist_epochs": 20, "cifar_epochs": 15, "width": 32, "depth": 3, "dense_units": 128,
             "tuner_trials": 20, "tuner_epochs": 10, "finetune_epochs": 10,
             "augment": {"flip": True, "crop_pad": 4, "rotate": 10.0}},
}


@dataclass(frozen=True)
class Experiment:
    key: str  # e.g. "first_cnn"
    label: str  # as the report names it, e.g. "first CNN"
    settings: dict = field(default_factory=dict)


def parse_sections(text: str) -> list[str]:
    """'1,3' or 'mnist,augmentation' or 'all' -> section names in the lab's order."""
    if text.strip() == "all":
        return list(SECTIONS.values())
    chosen = set()
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name = SECTIONS.get(item, item)
        if name not in SECTIONS.values():
            raise LabError(f"--sections names {item!r}, which is no section; use numbers 1-{len(SECTIONS)} or names "
                           f"{', '.join(SECTIONS.values())} (or 'all').")
        chosen.add(name)
    if not chosen:
        raise LabError("--sections is empty; name at least one section, e.g. --sections 1,2.")
    return [name for name in SECTIONS.values() if name in chosen]


def experiments(section: str, preset: dict, mnist: dict, cifar: dict) -> list[Experiment]:
    """The runs a section needs, as settings overrides (dataset settings included)."""
    if section == "mnist":
        base = {**mnist, "epochs": preset["mnist_epochs"], "batch_size": 32}
        return [Experiment("first_cnn", "first CNN", {**base, "model": "first_cnn"}),
                Experiment("mlp", "MLP baseline", {**base, "model": "mlp", "hidden": 128, "layers": 2})]
    cifar_cnn = {**cifar, "model": "cifar_cnn", "epochs": preset["cifar_epochs"], "batch_size": 64,
                 "width": preset["width"], "depth": preset["depth"], "dense_units": preset["dense_units"]}
    if section == "cifar":
        return [Experiment("cifar_cnn", "CIFAR-10 CNN", cifar_cnn)]
    if section == "augmentation":
        return [Experiment("cifar_cnn", "without augmentation", cifar_cnn),
                Experiment("cifar_cnn_augmented", "with augmentation", {**cifar_cnn, **preset["augment"],
                                                                         "save_augmented": True})]
    raise ValueError(f"unknown section {section!r}")
