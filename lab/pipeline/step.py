"""One job of the lab in this process (`run_lab.py <lab flags> --step ID`): what it waits for is resolved at start
from the finished work in --out (a fine-tuned run's --weights, the tuned CNN's settings from the search), and a
lock per job keeps any other process from training the same run at the same time."""
from __future__ import annotations

from pathlib import Path

from core import locks, processes
from core.errors import LabError
from lab.config.settings import ExperimentSettings
from lab.pipeline.jobs import SEARCH, TUNED, Job, Lab, finished_run, run_settings
from lab.pipeline.tuned import Search, finished_search, search, tuned_settings
from lab.run.reuse import ensure_run
from lab.tuning import cluster

LOCKS, LOGS = ".locks", "logs"  # under --out


def lock_path(out: Path, job_id: str) -> Path:
    return Path(out) / LOCKS / f"{job_id}.lock"


def job_settings(lab: Lab, jobs: list[Job], job: Job) -> ExperimentSettings:
    """A run job's settings once what it waits for has finished; LabError naming the job to run first."""
    if job.key == TUNED:
        found = finished_search(job.backend, lab.first_cnn(), lab.preset)
        if found is None:
            raise _waits(job, f"{job.backend}.{SEARCH}")
        return tuned_settings(lab.first_cnn(), lab.preset, found)
    weights = None
    for before in job.after:
        weights = finished(lab, jobs, next(j for j in jobs if j.id == before))
        if weights is None:
            raise _waits(job, before)
    return run_settings(lab, job, weights)


def _waits(job: Job, before: str) -> LabError:
    return LabError(f"{job.id} waits for {before}, which has not finished in this --out; run --step {before} "
                    "first (the plan's stages keep this order).")


def finished(lab: Lab, jobs: list[Job], job: Job) -> Path | Search | None:
    """The job's finished work (a run folder, or the search), without training anything; None if not finished."""
    if job.kind == "search":
        return finished_search(job.backend, lab.first_cnn(), lab.preset)
    try:
        settings = job_settings(lab, jobs, job)
    except LabError:  # what it waits for has not finished, so neither has it
        return None
    return finished_run(job.backend, settings)


def run_step(lab: Lab, jobs: list[Job], job: Job) -> None:
    """Train the job here (reusing or resuming its run), under its lock; a search's worker takes no lock, since
    its chief holds it."""
    threads = processes.set_torch_threads()
    where = f" ({threads} CPU thread(s))" if threads else ""
    part = cluster.role() if job.kind == "search" else None
    if part is not None and part.kind == "worker":
        search(job.backend, lab.first_cnn(), lab.preset, rerun=False, worker_silence=lab.worker_silence)
        return
    with locks.held(lock_path(lab.out, job.id), f"the job {job.id}"):
        if job.kind == "search":
            found = search(job.backend, lab.first_cnn(), lab.preset, lab.rerun, lab.worker_silence)
            print(f"[{job.sections[0]}] {job.label} on {job.backend}{where}: done -> {found.folder}", flush=True)
            return
        run_dir, what = ensure_run(job.backend, job_settings(lab, jobs, job), lab.rerun)
    print(f"[{job.sections[0]}] {job.label} on {job.backend}{where}: {what} -> {run_dir}", flush=True)
