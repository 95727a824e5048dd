"""What run_lab.py runs: the lab's sections, their experiments, and the quick and full presets."""
from __future__ import annotations

from dataclasses import dataclass, field

from core.errors import LabError
from lab.config.settings import ExperimentSettings

SECTIONS = {"1": "mnist", "2": "cifar", "3": "augmentation", "4": "transfer"}
TITLES = {"mnist": "Convolutional Neural Network on MNIST dataset",
          "cifar": "Convolutional Neural Network on CIFAR10 dataset",
          "augmentation": "Data augmentation",
          "transfer": "Transfer learning / fine-tuning on CIFAR10 dataset"}
# Section 1.4's search spaces, of the cnn model. The full lab's is wide, around the first CNN. The quick lab's is
# bench.tune's narrowed to what its 30-minute search found good (2 blocks from 32 filters, no batch norm, low
# dropout, lr 2e-3), so that a few short trials on a CPU find a gain (bench/README.md, The quick preset, calibrated).
TUNER_SPACE = {"blocks": "1-3", "filters": "16,32,64", "kernel_size": "3", "padding": "same",
               "batch_norm": "true,false", "pool": "true", "dropout": "0.1,0.2,0.3,0.4", "dense_units": "64,128",
               "optimizer": "adam", "lr": "0.0003,0.001,0.003", "batch_size": "32,64,128"}
QUICK_TUNER_SPACE = {"blocks": "2", "filters": "32", "kernel_size": "3", "padding": "same",
                     "batch_norm": "false", "pool": "true", "dropout": "0.1,0.2", "dense_units": "128",
                     "optimizer": "adam", "lr": "0.001,0.002", "batch_size": "32,64"}

PRESETS = {
    # minutes on a CPU
    "quick": {"mnist_epochs": 3, "cifar_epochs": 3, "cifar_train_images": 6000, "width": 16, "depth": 2,
              "dense_units": 64, "tuner_space": QUICK_TUNER_SPACE, "tuner_trials": 4, "tuner_epochs": 2,
              "tuner_images": 4000, "finetune_epochs": 3, "transfer_train_images": 2000,
              "augment": {"flip": True, "crop_pad": 2}},
    # the lab's settings
    "full": {"mnist_epochs": 20, "cifar_epochs": 15, "cifar_train_images": None, "width": 32, "depth": 3,
             "dense_units": 128, "tuner_space": TUNER_SPACE, "tuner_trials": 20, "tuner_epochs": 10,
             "tuner_images": None, "finetune_epochs": 10, "transfer_train_images": None,
             "augment": {"flip": True, "crop_pad": 4, "rotate": 10.0}},
    # for tests and smoke checks only (seconds a run on tiny data): a preset with a name, since the processes a lab
    # starts do not see a test's changes to PRESETS
    "tiny": {"mnist_epochs": 1, "cifar_epochs": 1, "cifar_train_images": None, "width": 4, "depth": 1,
             "dense_units": 8, "tuner_space": QUICK_TUNER_SPACE, "tuner_trials": 2, "tuner_epochs": 1,
             "tuner_images": None, "finetune_epochs": 1, "transfer_train_images": 30,
             "augment": {"flip": True, "crop_pad": 2}},
}


@dataclass(frozen=True)
class Experiment:
    key: str  # e.g. "first_cnn"
    label: str  # as the report names it, e.g. "first CNN"
    settings: dict = field(default_factory=dict)
    weights_from: str | None = None  # the key of an earlier experiment whose run (same backend) gives --weights
    seed_offset: int = 0  # added to the lab's --seed: 1 for the run that measures the run-to-run spread


# Each section's baseline again with seed + 1, everything else the same: the run-to-run spread that the section's
# comparisons judge by. Sections 2 and 3 share one baseline (cifar_cnn), so one spread run.
BASELINES = {"mnist": "first_cnn", "cifar": "cifar_cnn", "augmentation": "cifar_cnn", "transfer": "from_scratch"}
SPREAD_KEYS = {"mnist": "first_cnn_next_seed", "cifar": "cifar_cnn_next_seed", "augmentation": "cifar_cnn_next_seed",
               "transfer": "from_scratch_next_seed"}
SPREAD_KEY = SPREAD_KEYS["mnist"]  # section 1's, the lab's only spread before each section had its own


def spread_key(section: str) -> str:
    """The key of a section's spread run, e.g. "cifar_cnn_next_seed"."""
    return SPREAD_KEYS[section]


def describe_preset(name: str) -> str:
    """E.g. "`quick`: 3 epochs in section 1, 3 in sections 2-4 on 10,000 of the CIFAR-10 training images, ..."."""
    p = PRESETS[name]
    images = f" on {p['cifar_train_images']:,} of the CIFAR-10 training images" if p["cifar_train_images"] else ""
    return (f"`{name}`: {p['mnist_epochs']} epochs in section 1, {p['cifar_epochs']} in sections 2-4{images}, "
            f"a keras-tuner search of {p['tuner_trials']} trials of up to {p['tuner_epochs']} epochs on "
            f"{_images(p['tuner_images'], 'the')} training images, {p['finetune_epochs']} fine-tuning epochs after 1 "
            f"of feature extraction on {_images(p['transfer_train_images'], 'the target classes')} training images")


def _images(count: int | None, whole: str) -> str:
    return f"at most {count:,}" if count else f"all {whole}"


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


def experiments(section: str, preset: dict, mnist: dict, cifar: dict, cifar_classes: int = 10,
                spread: bool = True) -> list[Experiment]:
    """The runs a section needs, as settings overrides (dataset settings included). Section 1.4's tuned
    model is not among them: it comes out of the search (lab.pipeline.tuned). spread adds the section's
    baseline with the next seed (spread_key)."""
    exps = _section_experiments(section, preset, mnist, cifar, cifar_classes)
    if not spread:
        return exps
    baseline = next(exp for exp in exps if exp.key == BASELINES[section])
    return [*exps, Experiment(spread_key(section), f"{baseline.label}, next seed", baseline.settings, seed_offset=1)]


def _section_experiments(section: str, preset: dict, mnist: dict, cifar: dict, cifar_classes: int) -> list[Experiment]:
    if section == "mnist":
        cnn = first_cnn(preset, mnist)
        return [Experiment("first_cnn", "first CNN", cnn),
                Experiment("mlp", "MLP baseline", {**cnn, "model": "mlp", "hidden": 128, "layers": 2})]
    cifar_cnn = {**cifar, "model": "cifar_cnn", "epochs": preset["cifar_epochs"], "batch_size": 64,
                 "train_images": preset["cifar_train_images"],
                 "width": preset["width"], "depth": preset["depth"], "dense_units": preset["dense_units"]}
    if section == "cifar":
        return [Experiment("cifar_cnn", "CIFAR-10 CNN", cifar_cnn)]
    if section == "augmentation":
        return [Experiment("cifar_cnn", "without augmentation", cifar_cnn),
                Experiment("cifar_cnn_augmented", "with augmentation", {**cifar_cnn, **preset["augment"],
                                                                         "save_augmented": True})]
    if section == "transfer":
        return transfer_experiments(cifar_cnn, preset, cifar_classes)
    raise ValueError(f"unknown section {section!r}")


def first_cnn(preset: dict, mnist: dict) -> dict:
    """The lab's first CNN (batch 32), which the MLP baseline and section 1.4's tuned model match."""
    return {**mnist, "model": "first_cnn", "epochs": preset["mnist_epochs"], "batch_size": 32}


def class_halves(count: int) -> tuple[str, str]:
    """The classes split in two disjoint halves, as --classes values: '0,1,2,3,4' and '5,6,7,8,9'."""
    if count < 4:
        raise LabError(f"section 4 pretrains on one half of the classes and fine-tunes on the other, so it needs "
                       f"at least 4 classes; the CIFAR dataset given has {count}.")
    first = count // 2
    return ",".join(map(str, range(first))), ",".join(map(str, range(first, count)))


def transfer_experiments(cifar_cnn: dict, preset: dict, cifar_classes: int) -> list[Experiment]:
    """No ImageNet weights offline, so the lab's transfer is between the two halves of CIFAR-10's classes:
    pretrain on the first half, then fine-tune on the second (a small target set in the quick preset, where
    transfer matters) against the same model from scratch, at the same budget (1 epoch of feature extraction,
    then every block at the full rate: bench/RESULTS-transfer.md)."""
    first, second = class_halves(cifar_classes)
    target = {**cifar_cnn, "classes": second, "train_images": preset["transfer_train_images"]}
    budget, lr = 1 + preset["finetune_epochs"], target.get("lr", ExperimentSettings.lr)
    return [Experiment("pretrained", f"pretrained on classes {first}", {**cifar_cnn, "classes": first}),
            Experiment("fine_tuned", "fine-tuned", {**target, "epochs": 1, "finetune_epochs": preset["finetune_epochs"],
                                                   "unfreeze": "all", "finetune_lr": lr},
                       weights_from="pretrained"),
            Experiment("from_scratch", "from scratch", {**target, "epochs": budget})]
