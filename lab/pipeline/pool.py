"""run_lab.py --devices N: the lab's jobs on this machine's devices, one job per device at a time, each a child
process `run_lab.py <the lab's flags> --step ID` started as soon as the jobs it waits for have finished. A search
takes every device free when it starts, as keras-tuner workers under a chief, and each device freed while it
has trials no worker holds and no other job is ready (one more worker). A failed job skips only the jobs that
wait for it; an interrupt (Ctrl-C, SIGTERM) kills every child's process group."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core import processes
from lab.config.machine import SHARED_CORES_ENV
from lab.pipeline.estimates import job_estimates
from lab.pipeline.jobs import Job, Lab, dependents
from lab.pipeline.lab_progress import PoolProgress
from lab.pipeline.step import LOGS, finished
from lab.pipeline.tuned import open_trials
from lab.tuning.cluster import READY, VARIABLES

ROOT = Path(__file__).resolve().parents[2]  # where run_lab.py is
JOBS_LOG = "jobs.jsonl"  # OUT/logs/: each job's start and end, as the pool saw them
READY_S, GRACE_S, TICK_S = 120.0, 30.0, 0.2
LOOK_S = 5.0  # how often a running search's saved oracle is read while a device is free


@dataclass
class Running:
    job: Job
    devices: list[str]
    log: Path
    started: float  # time.monotonic()
    argv: list[str]
    main: subprocess.Popen | None = None  # the job's process, or a search's chief (once its workers are ready)
    workers: list[subprocess.Popen] = field(default_factory=list)
    worker_logs: list[Path] = field(default_factory=list)
    chief_env: dict = field(default_factory=dict)
    tuner: dict = field(default_factory=dict)  # a search's KERASTUNER_ORACLE_* variables, for a worker joining later
    main_ended: float | None = None
    looked: float = 0.0  # when the pool last read the search's oracle for room for another worker

    @property
    def processes(self) -> list[subprocess.Popen]:
        return [p for p in [self.main, *self.workers] if p is not None]


class Pool:
    def __init__(self, lab: Lab, jobs: list[Job], devices: list[str], argv: list[str], console=None,
                 others: list[Path] = ()):
        """others: lab folders whose finished runs also give estimates (--estimates-from)."""
        self.lab, self.jobs, self.devices, self.argv = lab, jobs, devices, argv
        self.folders = [lab.out, *others]
        self.free = list(devices)
        self.state: dict[str, str] = {}  # job ID -> done, reused, failed or skipped
        self.running: dict[str, Running] = {}
        self.failures: list[str] = []
        self.logs = lab.out / LOGS
        self.progress = PoolProgress(len(jobs), len(devices), self._estimates(), console)

    def run(self) -> list[str]:
        """Every job to its end; one sentence per failed job (empty when all finished)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        for job in self.jobs:
            if not self.lab.rerun and finished(self.lab, self.jobs, job) is not None:
                self._end(job, "reused")
        before = signal.signal(signal.SIGTERM, _interrupt)
        try:
            while len(self.state) < len(self.jobs):
                self._poll()
                self._start_ready()
                self._grow_searches()
                if not self.running:  # nothing runs and nothing could start
                    self._stuck()
                time.sleep(TICK_S)
        finally:
            signal.signal(signal.SIGTERM, before)
            for running in self.running.values():
                processes.kill_all(running.processes)
        return self.failures

    def _start_ready(self) -> None:
        for job in self.jobs:
            if job.id in self.state or job.id in self.running:
                continue
            if any(self.state.get(before) in ("failed", "skipped") for before in job.after):
                self._end(job, "skipped")
            elif self.free and all(self.state.get(before) in ("done", "reused") for before in job.after):
                self._start(job)

    def _start(self, job: Job) -> None:
        take = len(self.free) if job.kind == "search" and not self.lab.rerun else 1
        devices, self.free = self.free[:take], self.free[take:]
        argv = [sys.executable, str(ROOT / "run_lab.py"), *self.argv, "--step", job.id]
        running = Running(job, [], self.logs / f"{job.id}.log", time.monotonic(), argv)
        if job.kind != "search" or len(self.devices) == 1 or self.lab.rerun:
            running.devices = devices
            running.main = processes.start(argv, self._env(devices[0]), running.log)
        else:  # keras-tuner's chief and workers: the workers first, the chief once they wait for it
            running.tuner = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(processes.free_port())}
            for device in devices:
                self._add_worker(running, device)
            running.chief_env = {**self._env(None), **running.tuner, "KERASTUNER_TUNER_ID": "chief"}
        self.running[job.id] = running
        self._record(job, "start", devices=devices, pids=[p.pid for p in running.processes])
        self.progress.started(job.id, devices, running.log)
        self._status()

    def _add_worker(self, running: Running, device: str) -> subprocess.Popen:
        i = len(running.workers)
        log = self.logs / f"{running.job.id}.tuner{i}.log"
        env = {**self._env(device), **running.tuner, "KERASTUNER_TUNER_ID": f"tuner{i}"}
        worker = processes.start(running.argv, env, log)
        running.devices.append(device)
        running.workers.append(worker)
        running.worker_logs.append(log)
        return worker

    def _grow_searches(self) -> None:
        """A device still free once every ready job has started goes to a running search as one more worker, if
        the search has a trial that no worker holds or is about to take (else it would wait for the search's end)."""
        for running in list(self.running.values()):
            while self.free and running.tuner and running.main is not None and running.main.poll() is None \
                    and time.monotonic() - running.looked > LOOK_S:
                running.looked = time.monotonic()
                live = [f"tuner{i}" for i, w in enumerate(running.workers) if w.poll() is None]
                if open_trials(running.job.backend, self.lab.first_cnn(), self.lab.preset, live) <= 0:
                    break
                device, self.free = self.free[0], self.free[1:]
                worker = self._add_worker(running, device)
                self._record(running.job, "worker", devices=[device], pids=[worker.pid])
                self.progress.joined(running.job.id, device, running.worker_logs[-1])
                self._status()

    def _env(self, device: str | None) -> dict:
        """A child's environment: its device (None: a search's chief, which only serves), nothing of a search
        unless given, and one plain line per epoch in its log."""
        env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
        if device is not None and device.startswith("cpu") and len(self.devices) == 1:
            env["CUDA_VISIBLE_DEVICES"] = ""  # alone on the CPU: its threads as this process has them
        elif device is None or device.startswith("cpu"):
            threads = 1 if device is None else processes.cpu_share(len(self.devices))
            env.update(processes.placement(0, [], threads))
            env[SHARED_CORES_ENV] = f"the lab trained {len(self.devices)} runs at once on this machine's CPU"
        else:
            env.update(processes.placement(0, [device], 0))
        if os.environ.get("LAB_PROGRESS") != "none":
            env["LAB_PROGRESS"] = "epoch"
        return env

    def _poll(self) -> None:
        for running in list(self.running.values()):
            if running.main is None:
                self._maybe_start_chief(running)
            elif running.main.poll() is not None and self._workers_done(running):
                self._finish(running)

    def _maybe_start_chief(self, running: Running) -> None:
        waited = time.monotonic() - running.started
        if waited > READY_S or processes.all_ready(running.workers, running.worker_logs, READY):
            running.main = processes.start(running.argv, running.chief_env, running.log)
            self._record(running.job, "chief", pids=[running.main.pid])

    def _workers_done(self, running: Running) -> bool:
        """Whether a search's workers have ended (they do once the chief is done), or had GRACE_S to."""
        running.main_ended = running.main_ended or time.monotonic()
        alive = any(w.poll() is None for w in running.workers)
        return not alive or time.monotonic() - running.main_ended > GRACE_S

    def _finish(self, running: Running) -> None:
        processes.kill_all(running.processes)  # whatever a child left behind in its group
        del self.running[running.job.id]
        self.free += running.devices
        code = running.main.returncode
        seconds = time.monotonic() - running.started
        self._record(running.job, "end", code=code)
        if code == 0:
            self._end(running.job, "done", seconds)
            return
        skipped = sorted(dependents(self.jobs, running.job.id))
        then = f"; skipped, as they wait for it: {', '.join(skipped)}" if skipped else ""
        self.failures.append(f"{running.job.id} ({running.job.label}) failed with exit code {code}; its log: "
                             f"{running.log}{then}.")
        self._end(running.job, "failed")

    def _estimates(self) -> dict[str, float]:
        """Each job's estimated seconds (lab.pipeline.estimates), by job ID."""
        found = job_estimates(self.lab, self.jobs, self.folders)
        return {job_id: e.seconds for job_id, e in found.items() if e.seconds is not None}

    def _end(self, job: Job, outcome: str, seconds: float | None = None) -> None:
        self.state[job.id] = outcome
        self.progress.ended(job.id, job.id, outcome, seconds)
        if outcome == "done":  # its rate now counts for the jobs left
            self.progress.guess.update(self._estimates())
        if outcome in ("done", "failed"):
            self._status()

    def _status(self) -> None:
        training = {job_id: (job_id, r.devices, r.started) for job_id, r in self.running.items()}
        pending = [j.id for j in self.jobs if j.id not in self.state and j.id not in self.running]
        self.progress.status(training, pending)

    def _stuck(self) -> None:
        for job in self.jobs:  # what is left waits for what never ends
            if job.id not in self.state:
                self._end(job, "skipped")

    def _record(self, job: Job, event: str, **more) -> None:
        line = json.dumps({"job": job.id, "event": event, "time": time.time(), **more})
        with open(self.logs / JOBS_LOG, "a") as f:
            f.write(line + "\n")


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops the lab as Ctrl-C does: the pool's finally kills every child
