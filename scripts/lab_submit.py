#!/usr/bin/env python
"""Submit a lab's plan (run_lab.py --plan PLAN.json) to SLURM: one job per entry, in dependency order, each
waiting for the jobs of the entries it depends on (--dependency=afterok, --kill-on-invalid-dep=yes). A run
entry is one job running its command (--wrap); a search entry is a job array in scripts/search_slurm.sbatch's
layout (scripts/lab_search_slurm.sbatch: task 0 the chief, tasks 1..workers its workers).

    python scripts/lab_submit.py runs/lab/plan.json --sbatch-args "--gres=gpu:1 --time=04:00:00"
    python scripts/lab_submit.py runs/lab/plan.json --dry-run      # the sbatch commands, nothing submitted

Submit from the folder the plan's commands run in (the checkout), with the lab's Python on PATH: sbatch hands
this environment to the jobs. The lab's --out must be a folder every node sees. Not yet run on a real cluster.
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

SEARCH_SCRIPT = Path(__file__).resolve().parent / "lab_search_slurm.sbatch"
DEFAULT_OUT = "runs/lab"  # run_lab.py's --out when the plan's flags leave it out
KINDS = ("run", "search")


class Refusal(Exception):
    """Bad input: one sentence, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab_submit.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", help="the plan file that run_lab.py --plan wrote")
    parser.add_argument("--dry-run", action="store_true", help="print the sbatch commands; submit nothing")
    parser.add_argument("--sbatch-args", default="",
                        help='options for every job, e.g. "--partition=gpu --gres=gpu:1 --time=04:00:00"')
    parser.add_argument("--log-dir", default=None, help="folder of the jobs' output (default: OUT/slurm-logs)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = load_plan(Path(args.plan))
        extra = _sbatch_args(args.sbatch_args)
        logs = Path(args.log_dir) if args.log_dir else lab_out(plan["lab"]) / "slurm-logs"
        if args.dry_run:
            return dry_run(plan, extra, logs)
        return submit(plan, extra, logs, _sbatch())
    except Refusal as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


# --- the plan ---------------------------------------------------------------------------------------------------

def load_plan(path: Path) -> dict:
    """The plan, checked: every entry with an ID, a kind, a command, known IDs to wait for, no cycle."""
    if not path.is_file():
        raise Refusal(f"{path} is no file; write the plan first with run_lab.py <the lab's flags> --plan {path}.")
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Refusal(f"{path} is not a plan file ({_reason(e)}); write it again with run_lab.py --plan.") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("entries"), list) or not plan["entries"]:
        raise Refusal(f'{path} has no "entries" list of jobs; write it again with run_lab.py --plan.')
    plan.setdefault("lab", [])
    ids = [_check_entry(entry, i, path) for i, entry in enumerate(plan["entries"], start=1)]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise Refusal(f"{path} names entry {twice[0]} more than once; write it again with run_lab.py --plan.")
    for entry in plan["entries"]:
        unknown = [dep for dep in entry["after"] if dep not in ids]
        if unknown:
            raise Refusal(f"entry {entry['id']} of {path} waits for {unknown[0]}, which is not in the plan; "
                          "write it again with run_lab.py --plan.")
    plan["entries"] = in_order(plan["entries"], path)
    return plan


def _reason(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"not JSON at line {error.lineno}: {error.msg}"
    return "not UTF-8 text"


def _check_entry(entry, number: int, path: Path) -> str:
    what = f"entry {number} of {path}"
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
        raise Refusal(f"{what} has no ID; write the plan again with run_lab.py --plan.")
    what = f"entry {entry['id']} of {path}"
    if entry.get("kind", "run") not in KINDS:
        raise Refusal(f"{what} is of kind {entry['kind']!r}; a plan's entries are 'run' or 'search'.")
    command = entry.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(part, str) for part in command):
        raise Refusal(f"{what} has no command (a list of strings); write the plan again with run_lab.py --plan.")
    after = entry.setdefault("after", [])
    if not isinstance(after, list) or not all(isinstance(dep, str) for dep in after):
        raise Refusal(f"{what} has an \"after\" that is not a list of entry IDs; write the plan again.")
    if entry.get("kind", "run") == "search":
        workers = entry.get("workers")
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise Refusal(f"{what} is a search with workers {workers!r}; a search needs at least 1 worker.")
    return entry["id"]


def in_order(entries: list[dict], path: Path) -> list[dict]:
    """The entries in the plan's order, each moved after those it waits for."""
    ordered, placed, left = [], set(), list(entries)
    while left:
        ready = [entry for entry in left if set(entry["after"]) <= placed]
        if not ready:
            names = ", ".join(entry["id"] for entry in left)
            raise Refusal(f"the entries {names} of {path} wait for each other, so none could start; "
                          "write the plan again with run_lab.py --plan.")
        ordered += ready
        placed |= {entry["id"] for entry in ready}
        left = [entry for entry in left if entry["id"] not in placed]
    return ordered


def lab_out(lab_argv: list[str]) -> Path:
    """The lab's --out, from the plan's run_lab.py flags."""
    out = DEFAULT_OUT
    for i, arg in enumerate(lab_argv):
        if arg == "--out" and i + 1 < len(lab_argv):
            out = lab_argv[i + 1]
        elif arg.startswith("--out="):
            out = arg.split("=", 1)[1]
    return Path(out)


# --- the jobs ---------------------------------------------------------------------------------------------------

def sbatch_command(entry: dict, dependencies: list[str], extra: list[str], logs: Path, out: Path) -> list[str]:
    """The sbatch command line of one entry, given the job IDs of the entries it waits for."""
    name = re.sub(r"[^\w.-]", "_", entry["id"])
    command = ["sbatch", "--parsable", f"--job-name={entry['id']}", *extra]
    if dependencies:
        command += [f"--dependency=afterok:{':'.join(dependencies)}", "--kill-on-invalid-dep=yes"]
    if entry.get("kind", "run") == "search":
        return command + [f"--array=0-{entry['workers']}", f"--output={logs / f'{name}-%A_%a.out'}",
                          str(SEARCH_SCRIPT), str(out), *entry["command"]]
    return command + [f"--output={logs / f'{name}-%j.out'}", f"--wrap={shlex.join(entry['command'])}"]


def submit(plan: dict, extra: list[str], logs: Path, sbatch: str) -> int:
    logs.mkdir(parents=True, exist_ok=True)
    jobs: dict[str, str] = {}
    for entry in plan["entries"]:
        command = sbatch_command(entry, [jobs[dep] for dep in entry["after"]], extra, logs, lab_out(plan["lab"]))
        jobs[entry["id"]] = _submit_one([sbatch, *command[1:]], entry["id"], jobs)
        after = f" after {', '.join(jobs[dep] for dep in entry['after'])}" if entry["after"] else ""
        print(f"lab_submit: {entry['id']} is job {jobs[entry['id']]}{after}", flush=True)
    print(f"lab_submit: {len(jobs)} job(s) submitted, output in {logs}. Once they have finished, "
          f"`python run_lab.py {shlex.join(plan['lab'])}` writes the report without training.")
    return 0


def _submit_one(command: list[str], entry_id: str, jobs: dict[str, str]) -> str:
    """sbatch --parsable's job ID ("12345" or "12345;cluster"); a refusal names the jobs already submitted."""
    done = " ".join(jobs.values())
    cancel = f"; cancel the {len(jobs)} job(s) already submitted with `scancel {done}`" if jobs else ""
    try:
        answer = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Refusal(f"sbatch did not answer for entry {entry_id} ({type(e).__name__}){cancel}, then submit "
                      "again.") from None
    job = answer.stdout.strip().split(";")[0]
    if answer.returncode != 0 or not job.isdigit():
        said = (answer.stderr.strip() or answer.stdout.strip() or f"exit code {answer.returncode}").splitlines()[0]
        raise Refusal(f"sbatch refused entry {entry_id} ({said[:160]}){cancel}, then submit again.")
    return job


def dry_run(plan: dict, extra: list[str], logs: Path) -> int:
    """The sbatch commands, with each dependency's job ID shown as {entry ID}."""
    for entry in plan["entries"]:
        command = sbatch_command(entry, [f"{{{dep}}}" for dep in entry["after"]], extra, logs, lab_out(plan["lab"]))
        print(f"{entry['id']}: {shlex.join(command)}")
    return 0


def _sbatch() -> str:
    found = shutil.which("sbatch")
    if found is None:
        raise Refusal("sbatch is not on PATH: run this on a SLURM login node, or add --dry-run to see the jobs.")
    return found


def _sbatch_args(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as e:
        raise Refusal(f"--sbatch-args {text!r} is not a shell word list ({e}); quote it as one string.") from None


if __name__ == "__main__":
    sys.exit(main())
