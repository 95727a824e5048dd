"""run_lab.py --plan FILE: the lab's jobs as JSON for a cluster's scheduler (scripts/lab_submit.py reads it), and
its stages as text files of shell commands, one per line, for `xargs -P N` or GNU parallel. Nothing trains."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from core.errors import LabError
from core.io import write_json_atomic, write_text_atomic
from lab.pipeline.estimates import Estimate
from lab.pipeline.jobs import Job, Lab, stages
from lab.pipeline.lab_progress import duration
from lab.pipeline.plan import SECTIONS

PLAN_LAB = "plan-lab.json"  # under --out: the lab last planned or run there, which --step checks


def stage_path(plan: Path, number: int) -> Path:
    """FILE.stage1.txt, FILE.stage2.txt, ..."""
    return plan.with_name(f"{plan.name}.stage{number}.txt")


def check_plan_path(plan: Path, overwrite: bool) -> None:
    if plan.exists() and not overwrite:
        raise LabError(f"--plan {plan} exists; add --overwrite to replace it, or give another file.")
    if plan.is_dir():
        raise LabError(f"--plan {plan} is a folder; give a file name, e.g. {plan / 'lab-plan.json'}.")


def plan_document(jobs: list[Job], lab_argv: list[str], guess: dict[str, Estimate], workers: int) -> dict:
    """{"lab": argv, "entries": [...], "stages": [[IDs], ...]}: each entry's command runs the job with the lab's
    flags; a search entry is keras-tuner's chief plus `workers` workers. guess: each job's estimate."""
    entries = []
    for job in jobs:
        seconds = guess[job.id].seconds
        entry = {"id": job.id, "after": list(job.after), "kind": job.kind, "label": job.label,
                 "estimate_s": None if seconds is None else round(seconds, 1),
                 "estimate_from": guess[job.id].source,
                 "command": ["python", "run_lab.py", *lab_argv, "--step", job.id]}
        entries.append({**entry, "workers": workers} if job.kind == "search" else entry)
    return {"lab": lab_argv, "entries": entries, "stages": stages(jobs)}


def plan_totals(jobs: list[Job], guess: dict[str, Estimate], devices: int) -> list[str]:
    """The estimates summed per stage, per section (a job two sections share counts in the first) and for the
    lab, in device time; on several devices, the least wall time the estimates allow."""
    numbers = {name: number for number, name in SECTIONS.items()}
    groups = [(f"stage {i}", stage) for i, stage in enumerate(stages(jobs), start=1)]
    groups += [(f"section {numbers[name]} ({name})", [j.id for j in jobs if j.sections[0] == name])
               for name in SECTIONS.values() if any(j.sections[0] == name for j in jobs)]
    lines = [f"{what}: {_sum(ids, guess)}" for what, ids in groups]
    lines.append(f"the lab: {_sum([j.id for j in jobs], guess)} (device time: one job after another)")
    if devices > 1:
        total = sum(guess[j.id].seconds or 0.0 for j in jobs)
        chain = longest_chain(jobs, guess, devices)
        lines.append(f"on {devices} devices at least {duration(max(chain, total / devices))} (the longest chain "
                     f"of jobs that wait for each other, a search's trials over {devices} workers: {duration(chain)}; "
                     f"the device time / {devices}: {duration(total / devices)})")
    return lines


def longest_chain(jobs: list[Job], guess: dict[str, Estimate], workers: int = 1) -> float:
    """Seconds of the longest path through jobs that wait for each other (a job with no estimate counts 0; a
    search's trials spread over `workers`)."""
    ends: dict[str, float] = {}
    for stage in stages(jobs):
        for job in (j for j in jobs if j.id in stage):
            seconds = (guess[job.id].seconds or 0.0) / (workers if job.kind == "search" else 1)
            ends[job.id] = seconds + max((ends[a] for a in job.after), default=0.0)
    return max(ends.values(), default=0.0)


def _sum(ids: list[str], guess: dict[str, Estimate]) -> str:
    known = [guess[i].seconds for i in ids if guess[i].seconds is not None]
    missing = len(ids) - len(known)
    text = f"{len(ids)} job(s), {duration(sum(known))}" if known else f"{len(ids)} job(s), no estimate"
    return text + (f" plus {missing} job(s) with no estimate" if known and missing else "")


def write_plan(plan: Path, document: dict) -> list[Path]:
    """The JSON file and one text file per stage; the paths written."""
    commands = {entry["id"]: shlex.join(entry["command"]) for entry in document["entries"]}
    written = [write_json_atomic(plan, document)]
    for number, stage in enumerate(document["stages"], start=1):
        written.append(write_text_atomic(stage_path(plan, number), "".join(commands[i] + "\n" for i in stage)))
    return written


def lab_identity(lab: Lab) -> dict:
    """What makes a lab this lab, devices aside, in JSON's types: a step of its plan must ask for the same."""
    identity = {"backends": lab.backends, "sections": lab.sections, "preset": lab.preset["name"], "data": lab.data,
                "spread_seed": lab.spread, "runs": lab.common}
    return json.loads(json.dumps(identity))


def record_plan_lab(lab: Lab) -> Path:
    return write_json_atomic(lab.out / PLAN_LAB, lab_identity(lab))


def check_step_lab(lab: Lab) -> None:
    """--step with other lab flags than the plan written for this --out: one sentence naming what differs."""
    path = lab.out / PLAN_LAB
    if not path.is_file():
        return  # no plan for this --out: a step run by hand
    planned, asked = json.loads(path.read_text()), lab_identity(lab)
    changed = [key for key in asked if planned.get(key) != asked[key]]
    if changed:
        raise LabError(f"--step asks for another lab than the plan written for {lab.out} ({', '.join(changed)} "
                       "differ); run the plan's own commands, or write the plan again with these flags "
                       "(--plan FILE --overwrite).")
