"""Turn --accelerator/--gpus/--devices/--num-nodes/--strategy/--precision into one plan both backends follow."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core import cpu_bf16
from core.errors import LabError
from lab.config.launch import Launch, detect
from lab.settings_group import SettingsGroup

if TYPE_CHECKING:
    from lab.config.settings import ExperimentSettings


@dataclass(frozen=True)
class DeviceSpec(SettingsGroup):
    """The settings of what a run trains on, as asked; plan_devices turns them into a DevicePlan."""

    accelerator: str
    gpus: int | None
    devices: str
    num_nodes: int | None
    strategy: str
    sync_batchnorm: bool
    precision: str
    compile: bool


@dataclass(frozen=True)
class DevicePlan:
    accelerator: str  # "cpu" or "gpu"
    devices: list[int] | int  # GPU indices, or a CPU process (Lightning) or replica (Keras) count
    precision: str
    num_nodes: int = 1
    strategy: str = "auto"  # Lightning's Trainer strategy when world_size > 1
    launch: Launch = Launch(None)

    @property
    def num_gpus(self) -> int:
        return len(self.devices) if self.accelerator == "gpu" else 0

    @property
    def per_node(self) -> int:
        return len(self.devices) if isinstance(self.devices, list) else self.devices

    @property
    def world_size(self) -> int:
        return self.per_node * self.num_nodes

    @property
    def global_rank(self) -> int:
        return self.launch.global_rank(self.per_node) if self.world_size > 1 else 0

    def describe(self, gpu_name: str | None = None) -> str:
        """What trained, for results.json: "cpu", "cpu x2", "gpu x2", "gpu x1 (NVIDIA H200)", "gpu x4 x 2 nodes"."""
        text = self.accelerator if self.accelerator == "cpu" and self.per_node == 1 else \
            f"{self.accelerator} x{self.per_node}"
        text += f" x {self.num_nodes} nodes" if self.num_nodes > 1 else ""
        return text + (f" ({gpu_name})" if gpu_name else "")

    def batches(self, batch_size: int) -> dict:
        """The run's data-parallel layout, as results.json records it."""
        return {"world_size": self.world_size, "num_nodes": self.num_nodes, "global_batch": batch_size,
                "per_device_batch": batch_size // self.world_size}


def plan_devices(settings: ExperimentSettings, gpus_available: int, launch: Launch | None = None) -> DevicePlan:
    """LabError when the request cannot be met on this machine or in this launch environment."""
    launch = detect() if launch is None else launch
    asked = DeviceSpec.from_settings(settings)
    plan = _plan(asked, gpus_available, launch)
    if settings.batch_size % plan.world_size:
        raise LabError(f"--batch-size {settings.batch_size} does not divide over {plan.world_size} devices; "
                       f"use a multiple of {plan.world_size} (it is the global batch, split evenly).")
    return plan


def _plan(settings: DeviceSpec, gpus_available: int, launch: Launch) -> DevicePlan:
    accelerator, wanted = _wanted(settings, gpus_available, launch)
    if accelerator == "cpu":
        _check_cpu_precision(settings.precision)
        if isinstance(wanted, list):
            raise LabError(f"--devices {settings.devices} names GPU indices but this run trains on the CPU; "
                           "give a count, e.g. --devices 2.")
        return _checked(DevicePlan("cpu", wanted, settings.precision, *_layout(settings, launch), launch), launch)
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
    return _checked(DevicePlan("gpu", wanted, settings.precision, *_layout(settings, launch), launch), launch)


def _check_cpu_precision(precision: str) -> None:
    if precision == "16-mixed":
        raise LabError("--precision 16-mixed needs a GPU: CPUs have no float16 units that PyTorch or TensorFlow "
                       "train with; use --precision 32, or bf16-mixed on a CPU with bfloat16 units.")
    if precision == "bf16-mixed" and not cpu_bf16.cpu_has_bf16():
        raise LabError("--precision bf16-mixed on the CPU needs bfloat16 units (AVX512-BF16 or AMX on x86, BF16 "
                       "on Arm), which this CPU lacks, and would run slower than float32; use --precision 32.")


def require_one_device(settings: ExperimentSettings | DeviceSpec, launch: Launch | None = None) -> None:
    """LabError when the settings ask for several devices or machines, for the commands that train several runs
    in one process (the lab, the comparisons, the searches): Lightning's DDP launcher would start the whole
    command again on every rank, and each would train every run."""
    launch = detect() if launch is None else launch
    devices = _parse_devices(settings.devices)
    several = (settings.gpus or 0) > 1 or (settings.num_nodes or 1) > 1 or \
        (isinstance(devices, int) and devices > 1) or (isinstance(devices, list) and len(devices) > 1)
    if several or launch.several:
        raise LabError("this command trains its runs one after another on one device; for several devices or "
                       "machines train each run with train_lightning.py or train_keras.py, or the whole lab with "
                       "run_lab.py --devices N (docs/scale-out.md).")


def _layout(settings: DeviceSpec, launch: Launch) -> tuple[int, str]:
    nodes = settings.num_nodes or launch.nodes or 1
    if nodes > 1 and launch.kind is None:
        raise LabError(f"--num-nodes {nodes} needs a launcher on every machine: start the run with torchrun or "
                       "srun, or set MASTER_ADDR, MASTER_PORT and NODE_RANK (docs/scale-out.md).")
    return nodes, settings.strategy


def _checked(plan: DevicePlan, launch: Launch) -> DevicePlan:
    if launch.per_node is not None and launch.per_node != plan.per_node:
        raise LabError(f"{launch.kind} started {launch.per_node} process(es) per machine but the run asks for "
                       f"{plan.per_node} device(s); use --devices {launch.per_node} or leave --devices auto.")
    if launch.nodes is not None and launch.nodes != plan.num_nodes:
        raise LabError(f"{launch.kind} runs on {launch.nodes} machine(s) but --num-nodes is {plan.num_nodes}; "
                       "drop --num-nodes to take the launcher's count.")
    return plan


def _wanted(settings: DeviceSpec, gpus_available: int, launch: Launch) -> tuple[str, list[int] | int]:
    auto = launch.per_node or 1  # under a launcher, one device per process it started
    if settings.gpus is not None:
        return ("cpu", auto) if settings.gpus == 0 else ("gpu", settings.gpus)
    devices = _parse_devices(settings.devices)
    count = auto if devices == "auto" else devices
    if settings.accelerator == "cpu" or (settings.accelerator == "auto" and gpus_available == 0):
        return "cpu", count
    return "gpu", count


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


def _asked(settings: DeviceSpec) -> str:
    if settings.gpus:
        return f"--gpus {settings.gpus} asks for {settings.gpus} GPU(s)"
    return f"--accelerator {settings.accelerator} --devices {settings.devices} asks for a GPU"


def lab_devices(settings: ExperimentSettings | DeviceSpec, gpus: list[str], cores: int,
                launch: Launch | None = None) -> list[str]:
    """run_lab.py's devices, one run on each at a time: the CUDA_VISIBLE_DEVICES entry of each GPU asked for
    (`gpus`: those this machine shows), or N slots of the CPU ("cpu0", ...), which divide its cores. LabError when
    the machine has fewer, before any training."""
    launch = detect() if launch is None else launch
    if launch.several:
        raise LabError(f"run_lab.py starts a process per run itself, so it cannot run under {launch.kind}; start it "
                       "once, with --devices N, or run the steps of its --plan on the cluster (docs/scale-out.md).")
    spec = settings if isinstance(settings, DeviceSpec) else DeviceSpec.from_settings(settings)
    plan = _plan(spec, len(gpus), Launch(None))
    if plan.accelerator == "gpu":
        return [gpus[i] for i in plan.devices]
    if plan.devices > cores:
        raise LabError(f"--devices {plan.devices} asks for {plan.devices} CPU processes but this machine has "
                       f"{cores} core(s); use --devices {cores} or fewer.")
    return [f"cpu{i}" for i in range(plan.devices)]


# The device settings each run of run_lab.py saves, whatever the lab's devices: one device, the accelerator that
# the process sees. The lab places each run (CUDA_VISIBLE_DEVICES: its GPU, or none for a CPU lab), so a run
# matches the runs of labs on 1 or N devices, on any machine, and those of labs made before with the defaults.
ONE_DEVICE = {"accelerator": "auto", "gpus": None, "devices": "auto"}


def asks_for_cpu(settings: ExperimentSettings | DeviceSpec) -> bool:
    """Whether the flags name the CPU (--accelerator cpu, --gpus 0): its runs must not see a GPU."""
    spec = settings if isinstance(settings, DeviceSpec) else DeviceSpec.from_settings(settings)
    return spec.gpus == 0 or (spec.gpus is None and spec.accelerator == "cpu")


def requested_count(settings: ExperimentSettings | DeviceSpec) -> int:
    """How many devices the flags ask for, on whatever machine (one for 'auto')."""
    spec = settings if isinstance(settings, DeviceSpec) else DeviceSpec.from_settings(settings)
    _, wanted = _wanted(spec, 1, Launch(None))
    return len(wanted) if isinstance(wanted, list) else wanted
