"""The lab as a graph of jobs, built once from the plan's experiments: one job per run (or search) of a backend,
with the jobs it waits for. Each job runs as `run_lab.py <lab flags> --step ID` (lab.pipeline.step), on this
machine's devices (lab.pipeline.pool) or on a cluster's scheduler (the --plan file, lab.pipeline.plan_file)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.errors import LabError
from lab.config.settings import ExperimentSettings, make_settings
from lab.pipeline.plan import Experiment, experiments, first_cnn
from lab.records.results import RESULTS_FILE
from lab.run.backend import in_training_order
from lab.run.reuse import find_matching

SEARCH, TUNED = "search", "tuned_cnn"  # section 1.4's two jobs on each backend


@dataclass(frozen=True)
class Lab:
    """What a run_lab.py command asks for, devices aside: the same for the lab and each of its steps."""

    backends: list[str]
    sections: list[str]
    preset: dict  # a PRESETS entry with its "name"
    data: dict  # "mnist" and "cifar": dataset settings
    cifar_classes: int
    spread: bool
    common: dict  # out, seed and the one-device settings every run saves
    rerun: bool = False
    worker_silence: float | None = None  # the search's --worker-silence (None: tune_*.py's default)
    sizes: dict = field(default_factory=dict, compare=False)  # "mnist", "cifar": estimates.DataSize, as loaded

    @property
    def out(self) -> Path:
        return Path(self.common["out"])

    def first_cnn(self) -> dict:
        """Section 1's first CNN with the lab's common settings: the search's baseline."""
        return {**first_cnn(self.preset, self.data["mnist"]), **self.common}


@dataclass(frozen=True)
class Job:
    id: str  # "<backend>.<key>", e.g. "lightning.first_cnn"
    backend: str
    key: str  # the experiment's key, "search" or "tuned_cnn"
    label: str
    sections: tuple[str, ...]  # the sections whose report uses it
    after: tuple[str, ...] = ()  # the IDs of the jobs it waits for
    experiment: Experiment | None = field(default=None, compare=False)

    @property
    def kind(self) -> str:
        return "search" if self.key == SEARCH else "run"


def build_jobs(lab: Lab) -> list[Job]:
    """Every job of the lab, in the order the pool starts them when they are ready. Identical experiments of two
    sections (2 and 3 share cifar_cnn) make one job; the same key with other settings is a mistake in the plan."""
    jobs: dict[str, Job] = {}
    for backend in in_training_order(lab.backends):
        for section in lab.sections:
            if section == "mnist":  # first: the longest, and it takes every device free when it starts
                _add(jobs, Job(f"{backend}.{SEARCH}", backend, SEARCH, "keras-tuner search", (section,)))
            for exp in experiments(section, lab.preset, lab.data["mnist"], lab.data["cifar"], lab.cifar_classes,
                                   lab.spread):
                _add(jobs, Job(f"{backend}.{exp.key}", backend, exp.key, exp.label, (section,),
                               tuple(f"{backend}.{k}" for k in [exp.weights_from] if k), exp))
            if section == "mnist":
                _add(jobs, Job(f"{backend}.{TUNED}", backend, TUNED, "tuned CNN", (section,),
                               (f"{backend}.{SEARCH}",)))
    return list(jobs.values())


def _add(jobs: dict[str, Job], job: Job) -> None:
    known = jobs.get(job.id)
    if known is None:
        jobs[job.id] = job
        return
    a, b = known.experiment, job.experiment
    if a is not None and (a.settings, a.weights_from, a.seed_offset) != (b.settings, b.weights_from, b.seed_offset):
        raise ValueError(f"{job.id} appears in sections {known.sections[0]} and {job.sections[0]} with other "
                         "settings; give one of them another key in lab/pipeline/plan.py")
    jobs[job.id] = Job(known.id, known.backend, known.key, known.label, known.sections + job.sections, known.after,
                       known.experiment)


def find_job(jobs: list[Job], job_id: str) -> Job:
    """The job of this ID; LabError naming the lab's IDs when it is none of them."""
    for job in jobs:
        if job.id == job_id:
            return job
    raise LabError(f"--step {job_id} is no job of this lab with these flags (its jobs: "
                   f"{', '.join(j.id for j in jobs)}); give the flags of the lab's plan and one of its IDs.")


def stages(jobs: list[Job]) -> list[list[str]]:
    """The jobs in stages: each stage's jobs wait only for jobs of earlier stages."""
    done: set[str] = set()
    left, result = list(jobs), []
    while left:
        stage = [j.id for j in left if set(j.after) <= done]
        if not stage:
            raise ValueError(f"the jobs {[j.id for j in left]} wait for each other")
        result.append(stage)
        done |= set(stage)
        left = [j for j in left if j.id not in done]
    return result


def dependents(jobs: list[Job], job_id: str) -> set[str]:
    """Every job that waits for this one, directly or through others."""
    found, frontier = set(), {job_id}
    while frontier:
        frontier = {j.id for j in jobs if set(j.after) & frontier} - found
        found |= frontier
    return found


def run_settings(lab: Lab, job: Job, weights: Path | None = None) -> ExperimentSettings:
    """A run job's settings (not the search's nor the tuned CNN's); `weights`: the run folder of the job it waits
    for, which a fine-tuned run starts from."""
    exp = job.experiment
    extra = {"weights": str(weights)} if exp.weights_from else {}
    name = f"{exp.key}-{exp.settings['dataset']}"
    return make_settings({**exp.settings, **lab.common, **extra, "seed": lab.common["seed"] + exp.seed_offset,
                          "name": name})


def finished_run(backend: str, settings: ExperimentSettings) -> Path | None:
    """The run folder of these settings when it holds a finished run (results.json), else None."""
    run_dir = find_matching(settings, backend)
    return run_dir if run_dir is not None and (run_dir / RESULTS_FILE).exists() else None
