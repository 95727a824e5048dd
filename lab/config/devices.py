"""Turn --accelerator/--gpus/--devices/--precision into one plan both backends follow."""
from __future__ import annotations

from dataclasses import dataclass

from lab.errors import LabError


@dataclass(frozen=True)
class DevicePlan:
    accelerator: str  # "cpu" or "gpu"
    devices: list[int] | int  # GPU indices, or a CPU process count
    precision: str

    @property
    def num_gpus(self) -> int:
        return len(self.devices) if self.accelerator == "gpu" else 0

    def describe(self, gpu_name: str | None = None) -> str:
        """What trained, for results.json: "cpu", "gpu x2" or "gpu x1 (NVIDIA H200)"."""
        if self.accelerator == "cpu":
            return "cpu"
        return f"gpu x{self.num_gpus}" + (f" ({gpu_name})" if gpu_name else "")


def plan_devices(settings, gpus_available: int) -> DevicePlan:
    """LabError when the request cannot be met on this machine."""
    accelerator, wanted = _wanted(settings, gpus_available)
    if accelerator == "cpu":
        if settings.precision == "16-mixed":
            raise LabError("precision 16-mixed needs a GPU; use --precision 32 or bf16-mixed on the CPU.")
        return DevicePlan("cpu", 1, settings.precision)
    if gpus_available == 0:
        raise LabError(f"{_asked(settings)} but this machine has no usable GPU; "
                       "use --gpus 0 or --accelerator cpu to train on the CPU.")
    if isinstance(wanted, int):
        if wanted > gpus_available:
            raise LabError(f"{_asked(settings)} but this machine has only {gpus_available}; "
                           f"use --gpus {gpus_available} or fewer.")
        wanted = list(range(wanted))
    bad = [i for i in wanted if i >= gpus_available]
    if bad:
        raise LabError(f"GPU index {bad[0]} does not exist: this machine has {gpus_available} GPU(s), "
                       f"numbered 0 to {gpus_available - 1}.")
    return DevicePlan("gpu", wanted, settings.precision)


def _wanted(settings, gpus_available: int) -> tuple[str, list[int] | int]:
    if settings.gpus is not None:
        return ("cpu", 1) if settings.gpus == 0 else ("gpu", settings.gpus)
    devices = _parse_devices(settings.devices)
    if settings.accelerator == "cpu":
        return "cpu", 1
    if settings.accelerator == "gpu":
        return "gpu", 1 if devices == "auto" else devices
    if gpus_available == 0:
        return "cpu", 1
    return "gpu", 1 if devices == "auto" else devices


def _parse_devices(text: str) -> str | int | list[int]:
    text = str(text).strip()
    if text == "auto":
        return text
    try:
        if "," in text:
            return [int(part) for part in text.split(",") if part.strip()]
        count = int(text)
    except ValueError:
        raise LabError(f"--devices must be 'auto', a count or a list like 0,1; got {text!r}.") from None
    if count < 1:
        raise LabError(f"--devices must be at least 1, got {count}.")
    return count


def _asked(settings) -> str:
    if settings.gpus:
        return f"--gpus {settings.gpus} asks for {settings.gpus} GPU(s)"
    return f"--accelerator {settings.accelerator} --devices {settings.devices} asks for a GPU"
