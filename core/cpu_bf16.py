"""Whether this CPU has bfloat16 arithmetic units, which `--precision bf16-mixed` on the CPU asks for.

The answer is torch's reading of the CPU (`torch.cpu.get_capabilities()`, cpuinfo's instruction sets) for both
backends: TensorFlow 2.21 exposes no check of its own (the oneDNN one, `IsBF16SupportedByOneDNNOnThisCPU`, is gone
from its Python API), and torch is loaded in every process of the lab (core/frameworks.py), the Keras ones too.
oneDNN itself also runs bfloat16 on plain AVX-512 (torch's `_is_mkldnn_bf16_supported` says yes there), but by
converting to float32: slower than float32 (pytorch/pytorch#86550), so that counts as no.
"""
from __future__ import annotations

# x86: AVX512-BF16 (Intel since Cooper Lake, AMD Zen 4) and AMX; Arm: the BF16 extension, and SVE's
BF16_UNITS = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


def cpu_has_bf16() -> bool:
    import torch

    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:  # an older torch: the flags Linux reads from the CPU
        return _linux_flags() & set(BF16_UNITS) != set()
    return any(capabilities().get(name) for name in BF16_UNITS)


def _linux_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return {flag for line in f if line.startswith(("flags", "Features")) for flag in line.split(":")[1].split()}
    except OSError:
        return set()
