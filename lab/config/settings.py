"""Experiment settings: one dataclass and one YAML format for both backends (lab.config.flags makes their flags)."""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from core.errors import LabError, one_line
from datamodules.registry import DATASETS
from datamodules.resize import RESIZE_POLICIES
from lab.specs.models import MODELS
from lab.specs.optimizer import OPTIMIZERS
from lab.specs.phases import check_unfreeze
from lab.specs.zoo import BACKBONE_NAMES, check_image_size, is_backbone

ACCELERATORS = ("auto", "cpu", "gpu")
PRECISIONS = ("32", "16-mixed", "bf16-mixed")
STRATEGIES = ("auto", "ddp", "ddp_spawn")
TEST_WEIGHTS = ("last", "best")
# Flags of a command, not settings of a run: not saved with it, not part of what makes two runs the same.
COMMAND_FLAGS = ("config", "resume", "progress")


@dataclass
class ExperimentSettings:
    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "first_cnn"
    epochs: int = 5
    batch_size: int = 32
    filters: int = 32
    kernel_size: int = 3
    stride: int = 1
    padding: str = "valid"
    hidden: int = 128
    layers: int = 1
    width: int = 32
    depth: int = 3
    dense_units: int = 128
    dropout: float = 0.25
    blocks: int = 2
    batch_norm: bool = False
    pool: bool = True
    flip: bool = False
    crop_pad: int = 0
    rotate: float = 0.0
    color_jitter: float = 0.0
    cutout: int = 0
    save_augmented: bool = False
    weights: str | None = None
    unfreeze: str = "1"
    finetune_epochs: int = 0
    finetune_lr: float | None = None
    image_size: int | None = None
    resize: str = "stretch"
    classes: str | None = None
    train_images: int | None = None
    optimizer: str = "adam"
    lr: float = 1e-3
    seed: int = 0
    val_fraction: float = 0.1
    test_weights: str = "last"
    bn_recalibration: int = 0
    out: str = "runs"
    name: str | None = None
    accelerator: str = "auto"
    gpus: int | None = None
    devices: str = "auto"
    num_nodes: int | None = None
    strategy: str = "auto"
    sync_batchnorm: bool = False
    precision: str = "32"
    compile: bool = False
    profile: bool = True

    @property
    def experiment(self) -> str:
        return self.name or f"{self.model}-{self.dataset}"

    def to_dict(self) -> dict:
        return asdict(self)


HELP = {
    "dataset": "dataset: mnist, fashion_mnist, cifar10, digits (bundled, needs no files) or folder (an image tree)",
    "data_dir": "folder (or .tar/.tar.gz for 'folder') holding the dataset files; downloads go there too",
    "model": f"model to train: {', '.join(MODELS)}, or a zoo backbone: {', '.join(BACKBONE_NAMES)} "
             "(torchvision resnet18 / mobilenet_v3_small / efficientnet_b0, Keras ResNet50 / MobileNetV3Small / "
             "EfficientNetB0)",
    "epochs": "number of training epochs",
    "batch_size": "images per training batch, over all devices together (each of N devices trains on 1/N)",
    "filters": "first_cnn: number of convolution filters",
    "kernel_size": "first_cnn: convolution kernel size (square)",
    "stride": "first_cnn: convolution stride",
    "padding": "first_cnn: convolution padding, 'valid' or 'same'",
    "hidden": "mlp: units per hidden layer",
    "layers": "mlp: number of hidden layers",
    "width": "cifar_cnn: filters of the first block (doubled at each block)",
    "depth": "cifar_cnn: number of conv blocks",
    "dense_units": "cifar_cnn: units of the dense head",
    "dropout": "cifar_cnn and cnn: dropout rate after each block and in the head",
    "blocks": "cnn: number of conv blocks (conv, optional batch norm, ReLU, optional pooling, dropout)",
    "batch_norm": "cnn: batch normalisation after each convolution (true/false)",
    "pool": "cnn: 2x2 max pooling after each block (true/false)",
    "flip": "augmentation: random horizontal flip of training images (true/false)",
    "crop_pad": "augmentation: pad by this many pixels, then crop back at random (0: off)",
    "rotate": "augmentation: random rotation up to this many degrees (0: off)",
    "color_jitter": "augmentation: random brightness/contrast change of this strength, e.g. 0.2 (0: off)",
    "cutout": "augmentation: blank a random square of this size in pixels (0: off)",
    "save_augmented": "save a PNG grid of augmented training images in the run folder (true/false)",
    "weights": "initial weights: none, imagenet (zoo backbones: the framework's download or cache), a weights "
               "file, or an earlier run's folder (its best checkpoint; the head is replaced if the classes differ)",
    "unfreeze": "fine-tuning: number of top backbone blocks to unfreeze, a fraction like 0.25, or all",
    "finetune_epochs": "fine-tuning epochs after the --epochs of feature extraction (0: no fine-tuning)",
    "finetune_lr": "fine-tuning learning rate (default: --lr / 10)",
    "image_size": "the side in pixels of the square images the network sees: a folder dataset's images, and "
                  "any dataset's for a project model, are resized once at load (and cached); a zoo backbone on "
                  "mnist, fashion_mnist, cifar10 or digits resizes on the fly (zoo backbones: default 224, at "
                  "least 32; 64 or 96 make CPU runs feasible)",
    "resize": "how --image-size fits images that are not square: stretch (the whole image, distorted, as Keras' "
              "default) or crop (the largest centred square, as Keras' crop_to_aspect_ratio); PIL bilinear",
    "classes": "train on these classes only: names or indices, comma-separated (e.g. 0,1,2,3,4)",
    "train_images": "train on a seeded random sample of this many training images (validation and test stay "
                    "whole): quick runs, small-data transfer learning",
    "optimizer": "optimizer: adam or sgd (sgd uses momentum 0.9)",
    "lr": "learning rate",
    "seed": "random seed for the split, the batch order and the initial weights",
    "val_fraction": "fraction of the training images held out for validation",
    "test_weights": "weights the test set is scored with: last (the last epoch's) or best (the checkpoint of the best "
                    "validation accuracy; of the last phase in a transfer run)",
    "bn_recalibration": "after training, recompute the running mean and variance of every batch norm that trains, "
                        "from the tested weights, as a plain average over this many training images (a seeded "
                        "random sample, not augmented, in batches of --batch-size), and save them in the tested "
                        "checkpoint; the report gives the test accuracy before and after (0: off, as the "
                        "frameworks train; e.g. 5120)",
    "out": "root folder of the runs: results go to OUT/<experiment>/<backend>/version_N",
    "name": "experiment name (default: <model>-<dataset>)",
    "accelerator": "auto (the GPU if there is one), cpu or gpu",
    "gpus": "number of GPUs to train on; 0 means the CPU",
    "devices": "devices per machine: 'auto', a count (on the CPU: that many DDP processes or tf.distribute "
               "replicas), or a comma-separated list of GPU indices",
    "num_nodes": "Lightning: machines to train on, started by torchrun, srun or by hand (default: from the "
                 "launcher, else 1)",
    "strategy": "Lightning: the Trainer's strategy with several devices: auto (ddp), ddp or ddp_spawn",
    "sync_batchnorm": "synchronise BatchNorm statistics across devices (true/false)",
    "precision": "numeric precision: 32, 16-mixed (a GPU) or bf16-mixed (a GPU, or a CPU with bfloat16 units: "
                 "AVX512-BF16 or AMX, e.g. AMD Zen 4, Intel since Cooper Lake)",
    "compile": "compile the network for speed: torch.compile (Lightning; needs a C++ compiler on the CPU, triton "
               "on a GPU) or XLA (Keras' jit_compile); the first epoch then includes the compiling (true/false)",
    "profile": "after training, time where a steady step goes (compute, data, the framework's loop) and how fast "
               "the tested network infers, for results.json and the lab report; a second or two (true/false)",
}
METAVARS = {"bn_recalibration": "IMAGES"}  # where the flag's name does not say what its value counts
CHOICES = {"dataset": DATASETS, "optimizer": OPTIMIZERS, "accelerator": ACCELERATORS, "precision": PRECISIONS,
           "strategy": STRATEGIES, "test_weights": TEST_WEIGHTS,
           "padding": ("valid", "same"), "model": MODELS + BACKBONE_NAMES, "resize": RESIZE_POLICIES}


def arg_type(annotation) -> type:
    """The command-line type of a setting's annotation (bools as parse_bool)."""
    text = str(annotation)
    if "bool" in text:
        return parse_bool
    if "int" in text:
        return int
    if "float" in text:
        return float
    return str


def parse_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


parse_bool.__name__ = "bool"


def settings_from_args(args: argparse.Namespace) -> ExperimentSettings:
    """Defaults, overridden by the YAML file, overridden by the flags given."""
    values = {}
    config = getattr(args, "config", None)
    if config:
        values.update(load_yaml(config))
    values.update({k: v for k, v in vars(args).items() if k not in COMMAND_FLAGS})
    return make_settings(values)


def load_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise LabError(f"config file {path} does not exist; check the --config path.") from None
    except yaml.YAMLError as e:
        raise LabError(f"config file {path} is not valid YAML ({one_line(e)}); fix it or drop --config.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LabError(f"config file {path} must be a mapping of setting: value, not a {type(data).__name__}.")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def make_settings(values: dict) -> ExperimentSettings:
    known = {f.name: f for f in fields(ExperimentSettings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise LabError(f"unknown setting(s) {', '.join(unknown)}; the settings are those of --help.")
    converted = {k: _convert(known[k], v) for k, v in values.items()}
    settings = ExperimentSettings(**converted)
    validate(settings)
    return settings


def _convert(f, value):
    if value is None:
        return None
    kind = arg_type(f.type)
    if kind is int and isinstance(value, float) and not value.is_integer():
        _bad(f, value)
    try:
        return kind(value)
    except (TypeError, ValueError):
        _bad(f, value)


def _bad(f, value):
    raise LabError(f"setting {f.name} must be a {arg_type(f.type).__name__}, got {value!r}.")


def validate(s: ExperimentSettings) -> None:
    for name, choices in CHOICES.items():
        if getattr(s, name) not in choices:
            raise LabError(f"{name} must be one of {', '.join(choices)}, got {getattr(s, name)!r}.")
    positive = ("epochs", "batch_size", "filters", "kernel_size", "hidden", "width", "depth", "dense_units", "blocks")
    for name in positive:
        if getattr(s, name) < 1:
            raise LabError(f"{name.replace('_', '-')} must be at least 1, got {getattr(s, name)}.")
    if s.stride < 1:
        raise LabError(f"stride must be at least 1, got {s.stride}.")
    if s.layers < 0:
        raise LabError(f"layers must be 0 or more, got {s.layers}.")
    if s.lr <= 0:
        raise LabError(f"lr must be positive, got {s.lr}.")
    if not 0 <= s.dropout < 1:
        raise LabError(f"dropout must be in [0, 1), got {s.dropout}.")
    if not 0 < s.val_fraction < 1:
        raise LabError(f"val-fraction must be between 0 and 1, got {s.val_fraction}.")
    for name in ("crop_pad", "cutout", "finetune_epochs", "bn_recalibration"):
        if getattr(s, name) < 0:
            raise LabError(f"{name.replace('_', '-')} must be 0 or more, got {getattr(s, name)}.")
    if not 0 <= s.rotate <= 180:
        raise LabError(f"rotate must be between 0 and 180 degrees, got {s.rotate}.")
    if not 0 <= s.color_jitter < 1:
        raise LabError(f"color-jitter must be in [0, 1), got {s.color_jitter}.")
    if s.finetune_lr is not None and s.finetune_lr <= 0:
        raise LabError(f"finetune-lr must be positive, got {s.finetune_lr}.")
    _validate_transfer(s)
    if s.train_images is not None and s.train_images < 1:
        raise LabError(f"train-images must be at least 1, got {s.train_images}.")
    if s.gpus is not None and s.gpus < 0:
        raise LabError(f"gpus must be 0 or more, got {s.gpus}.")
    if s.num_nodes is not None and s.num_nodes < 1:
        raise LabError(f"num-nodes must be at least 1, got {s.num_nodes}.")
    check_out(s.out)


def _validate_transfer(s: ExperimentSettings) -> None:
    check_unfreeze(s.unfreeze)
    if s.image_size is not None:
        if is_backbone(s.model):
            check_image_size(s.image_size)
        elif s.image_size < 1:
            raise LabError(f"image-size must be at least 1 pixel, got {s.image_size}.")


def check_out(out: str | Path, flag: str = "--out") -> None:
    """LabError unless `out` is a folder that exists or can be made, and can be written: checked before anything
    runs, so that a bad --out costs no training and leaves nothing behind."""
    path = Path(out).expanduser()
    if os.path.exists(path) and not os.path.isdir(path):
        raise LabError(f"{flag} {out} is a file, not a folder; give a folder path (it is created when missing).")
    existing = path
    while not os.path.exists(existing):  # the nearest part that exists: a folder, or why the path cannot be made
        existing = existing.parent
    if not os.path.isdir(existing):
        raise LabError(f"{flag} {out} cannot be created because {existing} is a file; give a path under a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise LabError(f"{flag} {out} cannot be written: {existing} is not writable by this user; "
                       "give a folder you can write to.")
