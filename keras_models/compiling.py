"""Keras' compile: the optimizer (lab.specs.optimizer), the loss on logits, the accuracy metric, and --compile
as XLA's jit_compile, refused in one sentence where Keras would quietly turn it off."""
from __future__ import annotations

from core.errors import LabError, warn_once
from core.frameworks import keras
from lab.specs.optimizer import OptimizerSpec

# Why, measured: docs/speed.md and bench/README.md, "`--compile` on the CPU".
CPU_COST = ("--compile on the CPU makes Keras training slower, not faster: XLA compiles the step into its own CPU "
            "code, whose convolutions are slower here than TensorFlow's own kernels, with oneDNN or without "
            "(bench/README.md); drop --compile on the CPU, it is for GPUs.")


def warn_cpu_cost() -> None:
    warn_once(CPU_COST)


def build_optimizer(spec: OptimizerSpec) -> keras.optimizers.Optimizer:
    if spec.name == "sgd":
        return keras.optimizers.SGD(spec.lr, momentum=spec.sgd_momentum)
    return keras.optimizers.Adam(spec.lr, epsilon=spec.adam_epsilon)


def compile_model(model: keras.Model, optimizer: OptimizerSpec, xla: bool = False) -> keras.Model:
    """Keras' compile; xla (--compile) is jit_compile, given always: Keras' "auto" would use XLA on a GPU only."""
    model.compile(optimizer=build_optimizer(optimizer),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")], jit_compile=xla)
    return check_xla(model, xla)


def check_xla(model: keras.Model, xla: bool) -> keras.Model:
    """Keras turns jit_compile off, with a warning only, where XLA cannot run the model: refuse instead."""
    if xla and not model.jit_compile:
        raise LabError("--compile cannot compile this model with XLA here (Keras turned jit_compile off: a layer "
                       "without XLA support, or a Mac's GPU); drop --compile.")
    return model
