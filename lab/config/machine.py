"""A description of the machine a run happened on, for results.json and reports."""
from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

_PACKAGES = ("torch", "pytorch-lightning", "torchmetrics", "tensorflow", "keras", "keras-tuner")
# Set by whatever starts several trainings on one machine's cores at once (its value says why), so that the runs
# leave their inference speed unmeasured rather than measure it beside the others' work.
SHARED_CORES_ENV = "LAB_SHARED_CORES"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def gpu_names() -> list[str]:
    """GPU names, read without importing a framework (nvidia-smi), so both backends report alike."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def versions() -> dict[str, str | None]:
    found = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": ram_gib(),
        "gpus": gpu_names(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions(),
    }


def describe(machine: dict) -> str:
    """One line: 'AMD EPYC, 2 cores, 23.4 GiB RAM, no GPU; Python 3.11.7, torch 2.14.1, ...'."""
    gpus = ", ".join(machine.get("gpus") or []) or "no GPU"
    libs = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items() if v)
    return f"{machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('ram_gib')} GiB RAM, {gpus}; {libs}"


def describe_device(device: str) -> str:
    """The device a run trained on (lab.config.devices.DevicePlan.describe) and the CPU beside it, e.g.
    'cpu: AMD EPYC 7B13, 2 cores' or 'gpu x1 (NVIDIA H200); CPU AMD EPYC 9654, 16 cores'."""
    cpu = f"{cpu_model()}, {os.cpu_count()} cores"
    return f"{device}: {cpu}" if device.startswith("cpu") else f"{device}; CPU {cpu}"


def shared_cores(accelerator: str, world_size: int) -> str | None:
    """Why this process shares its cores with other training (results.json "inference_skipped"), else None: the
    reason LAB_SHARED_CORES gives, or a run of several CPU devices (DDP processes or Keras replicas)."""
    told = os.environ.get(SHARED_CORES_ENV, "").strip()
    if told:
        return told
    if accelerator == "cpu" and world_size > 1:
        return f"it trained on {world_size} CPU devices sharing this machine's cores"
    return None
