"""Every private name of a framework that the project touches, in one place.

A private name (a `_`-prefixed module, class or attribute, or anything under `keras.src`, `keras_tuner.src`
or `tensorflow.python`) can go in any release. pyproject bounds these libraries to the minor lines tested
and constraints.txt pins the versions; tests/test_private_api.py finds every such name in the source
(a new one not listed here fails, with its file and line) and checks that each listed one still exists in
the installed release (docs/dependencies.md: what to do when one is gone).

An entry's `path` is the name as imported: module, then class, then attribute; an attribute that the class
sets in its `__init__` counts as present when the class's source assigns `self.<name>`. `where` lists the
files that use it, `why` says what for.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Private:
    path: str
    where: tuple[str, ...]
    why: str

    @property
    def name(self) -> str:
        """The last component: what an attribute access, a `def` or a string in the source names."""
        return self.path.rsplit(".", 1)[-1]


_ORACLE = "keras_tuner.src.engine.oracle.Oracle"
_ENGINE = ("lab/tuning/engine.py",)

# library (its distribution name, as pip knows it) -> the private names the project touches
PRIVATE_NAMES: dict[str, tuple[Private, ...]] = {
    "pytorch-lightning": (
        Private("pytorch_lightning.core.module.LightningModule._current_fx_name",
                ("lightning_modules/classifier.py", "bench/step_cost.py"),
                "set around every hook Lightning calls; ImageClassifier stores it past nn.Module.__setattr__"),
        Private("pytorch_lightning.strategies.ddp.DDPStrategy._setup_model", ("lightning_modules/distributed.py",),
                "overridden: channels-last weights, and frozen parameters registered, before DDP wraps the model"),
        Private("lightning_fabric.strategies.launchers.subprocess_script._ChildProcessObserver._child_processes",
                ("lightning_modules/rank_death.py",),
                "the list Lightning's observer watches; rank 0 takes its children off it (the observer SIGKILLs rank 0 "
                "within 5 s of a child's death, without a word) and watches them itself"),
    ),
    "torchmetrics": (
        Private("torchmetrics.metric.Metric._computed", ("bench/step_cost.py",),
                "set by the update wrapper at every update; step_cost times storing it past nn.Module.__setattr__"),
        Private("torchmetrics.metric.Metric._update_count", ("bench/step_cost.py",), "as _computed"),
    ),
    "torch": (
        Private("torch.nn.Module._compiled_call_impl", ("lightning_modules/compiling.py",),
                "set by nn.Module.compile: whether a network is compiled"),
        Private("torch.utils._triton.has_triton", ("lightning_modules/compiling.py",),
                "--compile on a GPU refused in one sentence where triton is missing"),
        Private("torch._inductor.config", ("bench/compile_step.py",),
                "inductor's options (cpp.simdlen, freezing, ...), tried one at a time against eager on the CPU"),
        Private("torch.nn.modules.batchnorm._BatchNorm",
                ("callbacks/lightning_finetuning.py", "lightning_modules/classifier.py",
                 "lightning_modules/components/network.py"),
                "the base of every BatchNorm: frozen ones kept in inference mode, statistics counted as parameters"),
    ),
    "tensorflow": (
        Private("tensorflow.python.framework.config.enable_op_determinism", ("keras_models/training.py",),
                "deterministic ops on the CPU (public as tf.config.experimental's)"),
        Private("tensorflow.python.framework.config.disable_op_determinism", ("keras_models/training.py",),
                "off again for --compile; it has no public name"),
    ),
    "keras": (
        Private("keras.src.backend.config.keras_home", ("keras_models/components/backbones.py",),
                "Keras' cache folder, named when ImageNet weights cannot be downloaded"),
    ),
    "keras-tuner": (
        Private(f"{_ORACLE}._duplicate", _ENGINE, "overridden: configurations that cannot be built count as tried"),
        Private(f"{_ORACLE}._random_values", _ENGINE, "a random draw replaces an unbuildable Bayesian proposal"),
        Private(f"{_ORACLE}._max_collisions", _ENGINE, "raised: refused draws count as collisions too"),
        Private(f"{_ORACLE}._get_oracle_fname", _ENGINE, "oracle.json, written atomically"),
        Private(f"{_ORACLE}._save_trial", _ENGINE, "overridden: trial.json written atomically"),
        Private(f"{_ORACLE}._get_trial_dir", _ENGINE, "where _save_trial writes trial.json"),
        Private(f"{_ORACLE}._check_consecutive_failures", _ENGINE,
                "overridden: too many failed trials stop the search instead of raising inside a chief's EndTrial"),
        Private(f"{_ORACLE}._display", _ENGINE, "a trial begun before a chief restart gets its start and number"),
        Private(f"{_ORACLE}._retry_queue", (*_ENGINE, "lab/tuning/liveness.py"),
                "a reloaded chief keeps running trials with their workers; a silent worker's trial goes back to it"),
        Private("keras_tuner.src.engine.base_tuner.BaseTuner._get_tuner_fname", _ENGINE,
                "the tuner's state file, written atomically"),
        Private("keras_tuner.src.protos", _ENGINE, "the gRPC service the chief serves the oracle with"),
        Private("keras_tuner.src.distribute.oracle_chief.OracleServicer", _ENGINE,
                "keras-tuner's chief servicer, served with progress and an end"),
    ),
}


def entries() -> list[tuple[str, Private]]:
    """(library, entry) for every listed name."""
    return [(library, entry) for library, listed in PRIVATE_NAMES.items() for entry in listed]
