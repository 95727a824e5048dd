"""Child processes on one machine, for the launchers (scripts/launch_search.py, run_lab.py's pool): where each
one trains (its GPU or its share of the CPU's threads), each in a process group of its own, and every group
killed at the end, so that nothing is left running."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def placement(index: int, gpus: list[str], threads: int) -> dict[str, str]:
    """A child's device: its GPU (the only one it sees), or its share of the CPU's threads (torch and
    TensorFlow read these variables; set_torch_threads applies them to a torch already imported)."""
    if gpus:
        return {"CUDA_VISIBLE_DEVICES": gpus[index % len(gpus)]}
    return {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads), "TF_NUM_INTRAOP_THREADS": str(threads),
            "TF_NUM_INTEROP_THREADS": "1"}


def cpu_share(children: int) -> int:
    """The CPU threads each of `children` processes gets: the cores divided among them, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, children))


def set_torch_threads(env=None) -> int | None:
    """In a child given a share of the CPU: torch's intra-op threads from OMP_NUM_THREADS (the count, or None when
    the variable is not set)."""
    env = os.environ if env is None else env
    threads = env.get("OMP_NUM_THREADS", "")
    if not (threads.isdigit() and int(threads) > 0):
        return None
    import torch

    torch.set_num_threads(int(threads))
    return int(threads)


def start(argv: list[str], env: dict, log: Path | None, cwd: Path | None = None) -> subprocess.Popen:
    """A child in a session (process group) of its own, its output into `log` (None: this process's own)."""
    out = open(log, "w") if log else None
    try:
        return subprocess.Popen(argv, env=env, cwd=cwd or Path.cwd(), start_new_session=True, stdout=out,
                                stderr=subprocess.STDOUT if out else None)
    finally:
        if out:
            out.close()


def kill_group(process: subprocess.Popen) -> None:
    """Kill a child's whole process group (the processes it started too) and reap the child."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def kill_all(processes: list[subprocess.Popen]) -> None:
    """Every group of these children, whether the child itself has ended or not (its own children may not)."""
    for process in processes:
        kill_group(process)


def all_ready(processes: list[subprocess.Popen], logs: list[Path], marker: str) -> bool:
    """Whether every process has printed `marker` in its log, or has ended."""
    return all(p.poll() is not None or marker in _text(log) for p, log in zip(processes, logs))


def wait_ready(processes: list[subprocess.Popen], logs: list[Path], marker: str, timeout: float = 120) -> None:
    """Until all_ready or `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all_ready(processes, logs, marker):
        time.sleep(0.2)


def _text(log: Path) -> str:
    try:
        return log.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def free_port(ip: str = "127.0.0.1") -> int:
    """A port free on `ip` now; OSError when `ip` is not an address of this machine."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]
