"""run_lab.py --plan FILE: the lab's jobs as JSON for a cluster's scheduler (scripts/lab_submit.py reads it), and
its stages as text files of shell commands, one per line, for `xargs -P N` or GNU parallel. Nothing trains."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from core.errors import LabError
from core.io import write_json_atomic, write_text_atomic
from lab.pipeline.jobs import Job, Lab, stages
from lab.pipeline.lab_progress import earlier_times, estimates

PLAN_LAB = "plan-lab.json"  # under --out: the lab last planned or run there, which --step checks


def stage_path(plan: Path, number: int) -> Path:
    """FILE.stage1.txt, FILE.stage2.txt, ..."""
    return plan.with_name(f"{plan.name}.stage{number}.txt")


def check_plan_path(plan: Path, overwrite: bool) -> None:
    if plan.exists() and not overwrite:
        raise LabError(f"--plan {plan} exists; add --overwrite to replace it, or give another file.")
    if plan.is_dir():
        raise LabError(f"--plan {plan} is a folder; give a file name, e.g. {plan / 'lab-plan.json'}.")


def plan_document(jobs: list[Job], lab_argv: list[str], out: Path, workers: int) -> dict:
    """{"lab": argv, "entries": [...], "stages": [[IDs], ...]}: each entry's command runs the job with the lab's
    flags; a search entry is keras-tuner's chief plus `workers` workers."""
    guess = estimates(earlier_times(out))
    entries = []
    for job in jobs:
        entry = {"id": job.id, "after": list(job.after), "kind": job.kind, "label": job.label,
                 "estimate_s": round(guess[job.key], 1) if job.key in guess else None,
                 "command": ["python", "run_lab.py", *lab_argv, "--step", job.id]}
        entries.append({**entry, "workers": workers} if job.kind == "search" else entry)
    return {"lab": lab_argv, "entries": entries, "stages": stages(jobs)}


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
