"""The tuner's search space, defined once for both backends: a trial's hyperparameters are settings.

`define(hp, space)` declares the space on a keras-tuner HyperParameters object and returns the
trial's ExperimentSettings overrides for the `cnn` model, so either backend builds a trial's model
with its usual builders. Nothing here imports keras-tuner or a framework: `hp` is only called.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields

from core.errors import LabError
from lab.config.settings import ExperimentSettings, make_settings
from lab.specs.architectures import infer
from lab.specs.models import model_spec

MODEL = "cnn"
# Settings whose values decide whether a model can be built and how big it is.
SHAPE_FIELDS = ("blocks", "filters", "kernel_size", "padding", "batch_norm", "pool", "dense_units")


@dataclass(frozen=True)
class SearchSpace:
    """The values each setting may take in the search (blocks: the inclusive range min, max)."""

    blocks: tuple[int, int] = (1, 3)
    filters: tuple[int, ...] = (16, 32, 64)
    kernel_size: tuple[int, ...] = (3, 5)
    padding: tuple[str, ...] = ("same", "valid")
    batch_norm: tuple[bool, ...] = (False, True)
    pool: tuple[bool, ...] = (True, False)
    dropout: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    dense_units: tuple[int, ...] = (64, 128, 256)
    optimizer: tuple[str, ...] = ("adam", "sgd")
    lr: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
    batch_size: tuple[int, ...] = (32, 64, 128)

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    def text(self, name: str) -> str:
        """One setting's values as the flags write them: '1-3' for blocks, 'a,b' for the others."""
        values = [str(v).lower() if isinstance(v, bool) else str(v) for v in getattr(self, name)]
        return "-".join(values) if name == "blocks" else ",".join(values)

    def describe(self) -> str:
        return ", ".join(f"{name} {self.text(name)}" for name in asdict(self))


NAMES = tuple(f.name for f in fields(SearchSpace))
HELP = {
    "blocks": "range of conv blocks, MIN-MAX or one number",
    "filters": "filters of the first block (doubled per block), comma-separated choices",
    "kernel_size": "convolution kernel sizes, comma-separated",
    "padding": "convolution paddings: same, valid or both",
    "batch_norm": "batch normalisation after each convolution: true, false or both",
    "pool": "2x2 max pooling after each block: true, false or both",
    "dropout": "dropout rates, comma-separated",
    "dense_units": "units of the dense head, comma-separated",
    "optimizer": "optimizers: adam, sgd or both",
    "lr": "learning rates, comma-separated",
    "batch_size": "batch sizes, comma-separated",
}


def define(hp, space: SearchSpace = SearchSpace()) -> dict:
    """Declare the space on keras-tuner's `hp`; return this trial's settings overrides."""
    low, high = space.blocks
    overrides = {"model": MODEL, "blocks": hp.Fixed("blocks", low) if low == high else hp.Int("blocks", low, high)}
    for name in NAMES[1:]:
        values = list(getattr(space, name))
        if len(values) == 1:
            overrides[name] = hp.Fixed(name, values[0])
        elif isinstance(values[0], bool):  # Choice would turn booleans into 0 and 1
            overrides[name] = hp.Boolean(name, default=values[0])
        else:
            overrides[name] = hp.Choice(name, values)
    return overrides


def overrides_of(values: dict) -> dict:
    """The settings overrides of a trial's hyperparameter values (keras-tuner's own 'tuner/...' left out)."""
    return {"model": MODEL, **{name: values[name] for name in NAMES}}


def trial_settings(base: ExperimentSettings, overrides: dict, **more) -> ExperimentSettings:
    return make_settings({**base.to_dict(), **overrides, **more})


# ---- Command-line ranges and lists -------------------------------------------------------------

def parse_space(given: dict[str, str]) -> SearchSpace:
    """A SearchSpace from flag texts (name -> '1-3' for blocks, 'a,b,c' for the others); LabError if
    a range is empty or contradictory or a value is not a valid setting."""
    values = {}
    for name, text in given.items():
        values[name] = _parse_blocks(text) if name == "blocks" else _parse_list(name, text)
    return SearchSpace(**values)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_blocks(text: str) -> tuple[int, int]:
    parts = [p.strip() for p in str(text).split("-")]
    try:
        low, high = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None:
        raise LabError(f"--blocks must be a range MIN-MAX or one number, like 1-3, got {text!r}.")
    if low > high:
        raise LabError(f"--blocks {text} is an empty range: its minimum {low} is above its maximum {high}.")
    _check_value("blocks", low)
    return low, high


def _parse_list(name: str, text: str) -> tuple:
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise LabError(f"{_flag(name)} is empty; give one value or several separated by commas.")
    return tuple(dict.fromkeys(_check_value(name, item) for item in items))


def _check_value(name: str, value):
    """The value as the setting's type, checked by the settings' own validation."""
    try:
        return getattr(make_settings({"model": MODEL, name: value}), name)
    except LabError as e:
        raise LabError(f"{_flag(name)} {value}: {e}") from None


# ---- Which configurations can be built ---------------------------------------------------------

@dataclass(frozen=True)
class Constraint:
    """Which configurations fit the input: the shapes work out and the model has at most max_params."""

    input_shape: tuple[int, int, int]
    num_classes: int
    max_params: int | None = None

    def problem(self, values: dict) -> str | None:
        """Why the configuration cannot be trained here, or None when it can."""
        settings = ExperimentSettings(**overrides_of(values))
        try:
            layers = model_spec(settings, self.input_shape, self.num_classes)
        except LabError as e:
            return str(e)
        params = infer(layers, self.input_shape)[1].total
        if self.max_params and params > self.max_params:
            return f"{params:,} parameters, more than --max-params {self.max_params:,}"
        return None

    def fits(self, values: dict) -> bool:
        return self.problem(values) is None

    def check_space(self, space: SearchSpace) -> None:
        """LabError when not one configuration of the space can be built for this input."""
        choices = {name: getattr(space, name) for name in SHAPE_FIELDS}
        choices["blocks"] = range(space.blocks[0], space.blocks[1] + 1)
        first = {name: getattr(space, name)[0] for name in NAMES if name not in SHAPE_FIELDS}
        for combo in itertools.product(*choices.values()):
            if self.fits({**first, **dict(zip(choices, combo))}):
                return
        h, w, _ = self.input_shape
        cap = f" within --max-params {self.max_params:,}" if self.max_params else ""
        raise LabError(f"no configuration of the search space builds a model for {h}x{w} images{cap}; "
                       "allow fewer --blocks, --padding same, smaller --kernel-size or more --max-params.")
