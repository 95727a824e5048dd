"""Which process this is when a launcher started several, read from the environment the launcher set.

Lightning's own cluster environments read the same variables once the Trainer starts; this module answers
before that, when the run folder is made and the device plan checked: torchrun (TorchElastic), SLURM's
srun, Lightning's own DDP launcher (the processes it starts carry LOCAL_RANK), or nodes started by hand
with MASTER_ADDR and NODE_RANK.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

TORCHRUN_VARIABLES = ("RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
SLURM_INTERACTIVE_NAMES = ("bash", "interactive")  # as Lightning's SLURMEnvironment: a shell is not a job step


@dataclass(frozen=True)
class Launch:
    kind: str | None  # "torchrun", "slurm", "lightning" (a process Lightning's launcher started), "manual", None
    rank: int | None = None  # the global rank, when the environment tells it
    per_node: int | None = None  # processes per machine, when the launcher started them
    nodes: int | None = None  # machines, when the launcher tells it

    @property
    def several(self) -> bool:
        """Whether this process is one of several (a one-task SLURM job, say, is not)."""
        return self.kind in ("lightning", "manual") or (self.per_node or 1) * (self.nodes or 1) > 1

    def global_rank(self, per_node: int) -> int:
        """This process's global rank, `per_node` processes on each machine."""
        if self.rank is not None:
            return self.rank
        env = os.environ
        return int(env.get("NODE_RANK", env.get("GROUP_RANK", 0))) * per_node + int(env.get("LOCAL_RANK", 0))


def detect(env: Mapping[str, str] | None = None) -> Launch:
    env = os.environ if env is None else env
    if all(name in env for name in TORCHRUN_VARIABLES):
        per_node = int(env["LOCAL_WORLD_SIZE"])
        return Launch("torchrun", int(env["RANK"]), per_node, int(env.get("WORLD_SIZE", per_node)) // per_node)
    if "SLURM_NTASKS" in env and env.get("SLURM_JOB_NAME") not in SLURM_INTERACTIVE_NAMES:
        return Launch("slurm", int(env.get("SLURM_PROCID", 0)), _slurm_per_node(env), int(env.get("SLURM_NNODES", 1)))
    if "LOCAL_RANK" in env:
        return Launch("lightning")
    if "MASTER_ADDR" in env and "NODE_RANK" in env:
        return Launch("manual")
    return Launch(None)


def _slurm_per_node(env: Mapping[str, str]) -> int:
    """SLURM_NTASKS_PER_NODE, or the first count of SLURM_TASKS_PER_NODE (like '2(x3)')."""
    text = env.get("SLURM_NTASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE", "1")
    return int(text.split("(")[0].split(",")[0])
