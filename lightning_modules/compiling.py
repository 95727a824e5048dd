"""The optimizer (lab.specs.optimizer), and --compile on Lightning: torch.compile of the network, in place
(nn.Module.compile), so that its state dict keeps the keys of an eager network and checkpoints go both ways
between compiled and eager runs.

A network compiled the other way, `torch.compile(net)`, holds its weights under `_orig_mod.`; checkpoints and
weight files written so are read with that prefix dropped (`eager_keys`).

LAB_TORCH_COMPILE_BACKEND chooses torch.compile's backend (default inductor; `aot_eager` traces and runs the
same graphs without generating code, which the tests use to stay fast).
"""
from __future__ import annotations

import os
import shutil

import torch
from torch import nn

from core.errors import LabError, warn_once
from lab.specs.optimizer import OptimizerSpec

BACKEND_ENV = "LAB_TORCH_COMPILE_BACKEND"
COMPILED_PREFIX = "_orig_mod."
# Why, measured: docs/speed.md and bench/README.md, "`--compile` on the CPU" (python -m bench.compile_step).
CPU_COST = ("--compile on the CPU makes small networks train slower, not faster: torch.compile keeps eager "
            "PyTorch's oneDNN convolutions and matrix products and adds generated kernels around them that store "
            "ReLU's masks as bools through a slow path and transpose the convolution gradients, which costs more "
            "than it fuses unless the convolutions dominate the step (first_cnn: slower; cifar_cnn at batch 128: "
            "about even; bench/README.md); drop --compile on the CPU, it is for GPUs.")


def build_optimizer(spec: OptimizerSpec, params) -> torch.optim.Optimizer:
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.sgd_momentum)
    return torch.optim.Adam(params, lr=spec.lr, eps=spec.adam_epsilon)


def compile_backend() -> str:
    return os.environ.get(BACKEND_ENV) or "inductor"


def check_compiler(accelerator: str) -> None:
    """Refuse --compile in one sentence where inductor cannot generate code: on the CPU it compiles C++ (the
    compiler of $CXX, else g++), on a GPU triton kernels (triton and a C compiler, $CC else cc or gcc)."""
    if compile_backend() != "inductor":
        return
    if accelerator == "gpu":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise LabError("--compile on the GPU needs triton, which torch.compile generates its kernels with; "
                           "install it (pip install triton) or drop --compile.")
        found = [c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)]
        what = "a C compiler (cc, gcc or clang; or $CC)"
    else:
        cxx = os.environ.get("CXX") or "g++"
        found, what = ([cxx] if shutil.which(cxx) else []), f"a C++ compiler ({cxx}; $CXX names another)"
    if not found:
        raise LabError(f"--compile needs {what} on this machine, which torch.compile builds the compiled network "
                       "with; install one (e.g. apt-get install g++) or drop --compile.")


def warn_cpu_cost(accelerator: str) -> None:
    """One sentence on stderr where --compile costs instead of saving: inductor on the CPU."""
    if accelerator == "cpu" and compile_backend() == "inductor":
        warn_once(CPU_COST)


def compile_network(net: nn.Module) -> nn.Module:
    """Compile net's forward in place: net.state_dict() keeps its keys."""
    net.compile(backend=compile_backend())
    return net


def is_compiled(net: nn.Module) -> bool:
    return getattr(net, "_compiled_call_impl", None) is not None


def eager_keys(state: dict) -> dict:
    """A state dict with torch.compile's `_orig_mod.` dropped from its keys, wherever in the key it sits."""
    return {key.replace(COMPILED_PREFIX, "") if isinstance(key, str) else key: value for key, value in state.items()}
