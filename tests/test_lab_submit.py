"""scripts/lab_submit.py against a stub sbatch that records its calls, and the search entries' job-array script
run as SLURM would run its tasks (no SLURM here: its variables set by hand)."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.lab_submit import SEARCH_SCRIPT, main

STUB = f"""#!{sys.executable}
import json, os, pathlib, sys
log = pathlib.Path(os.environ["SBATCH_LOG"])
calls = log.read_text().splitlines() if log.exists() else []
if len(calls) + 1 == int(os.environ.get("SBATCH_FAIL_AT", "0")):
    sys.exit("sbatch: error: Batch job submission failed: Invalid account or account/partition combination")
with log.open("a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
print(f"{{100 + len(calls)}}" + os.environ.get("SBATCH_CLUSTER", ""))
"""


def _command(out: Path, step: str) -> list[str]:
    return ["python", "run_lab.py", "--preset", "quick", "--out", str(out), "--backends", "lightning", "--step", step]


def _entry(out: Path, step: str, after=(), kind="run", **more) -> dict:
    return {"id": step, "after": list(after), "kind": kind, "label": step.split(".")[1], "estimate_s": 812.4,
            "command": _command(out, step), **more}


def write_plan(tmp_path: Path) -> Path:
    """A plan in run_lab.py --plan's format, written by hand; fine_tuned comes before the run it waits for."""
    out = tmp_path / "shared out"  # a space, to check the quoting
    entries = [_entry(out, "lightning.first_cnn"), _entry(out, "lightning.mlp"),
               _entry(out, "lightning.search", kind="search", workers=2, estimate_s=None),
               _entry(out, "lightning.tuned_cnn", after=["lightning.search"]),
               _entry(out, "lightning.fine_tuned", after=["lightning.pretrained"]),
               _entry(out, "lightning.pretrained"),
               _entry(out, "lightning.report_check", after=["lightning.first_cnn", "lightning.fine_tuned"])]
    plan = {"lab": ["--preset", "quick", "--out", str(out), "--backends", "lightning"], "entries": entries,
            "stages": [["lightning.first_cnn", "lightning.mlp", "lightning.search", "lightning.pretrained"],
                       ["lightning.tuned_cnn", "lightning.fine_tuned"], ["lightning.report_check"]]}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


@pytest.fixture
def sbatch(tmp_path, monkeypatch) -> Path:
    """A stub sbatch first on PATH; returns the file where it records each call's arguments, one JSON line."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "sbatch").write_text(STUB)
    (folder / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_LOG", str(tmp_path / "calls.jsonl"))
    return tmp_path / "calls.jsonl"


def _options(call: list[str]) -> dict[str, str]:
    """--name=value options of an sbatch call, up to its script (a search) or its end."""
    return dict(arg[2:].split("=", 1) for arg in call if arg.startswith("--") and "=" in arg)


def test_one_job_per_entry_each_after_the_jobs_it_waits_for(tmp_path, sbatch, capsys):
    plan_path = write_plan(tmp_path)
    plan = json.loads(plan_path.read_text())
    assert main([str(plan_path), "--sbatch-args", "--partition=gpu --time=04:00:00"]) == 0
    calls = [json.loads(line) for line in sbatch.read_text().splitlines()]
    assert len(calls) == len(plan["entries"])
    job = {_options(call)["job-name"]: str(100 + i) for i, call in enumerate(calls)}
    assert sorted(job) == sorted(entry["id"] for entry in plan["entries"])
    out = tmp_path / "shared out"
    for entry in plan["entries"]:
        call = calls[int(job[entry["id"]]) - 100]
        options = _options(call)
        assert call[0] == "--parsable" and options["partition"] == "gpu" and options["time"] == "04:00:00"
        if entry["after"]:
            assert options["dependency"] == "afterok:" + ":".join(job[dep] for dep in entry["after"])
            assert options["kill-on-invalid-dep"] == "yes"
            assert all(int(job[dep]) < int(job[entry["id"]]) for dep in entry["after"])  # submitted before
        else:
            assert "dependency" not in options and "kill-on-invalid-dep" not in options
        name = entry["id"]
        if entry["kind"] == "search":
            script = call.index(str(SEARCH_SCRIPT))
            assert options["array"] == "0-2" and call[script + 1:] == [str(out), *entry["command"]]
            assert options["output"] == str(out / "slurm-logs" / f"{name}-%A_%a.out")
        else:
            assert shlex.split(options["wrap"]) == entry["command"]
            assert options["output"] == str(out / "slurm-logs" / f"{name}-%j.out")
    assert (out / "slurm-logs").is_dir()
    printed = capsys.readouterr().out
    assert f"lightning.tuned_cnn is job {job['lightning.tuned_cnn']} after {job['lightning.search']}" in printed
    assert "7 job(s) submitted" in printed and "run_lab.py --preset quick --out" in printed


def test_a_clusters_name_after_the_job_id_is_dropped(tmp_path, sbatch, monkeypatch, capsys):
    monkeypatch.setenv("SBATCH_CLUSTER", ";cluster2")
    assert main([str(write_plan(tmp_path))]) == 0
    calls = [json.loads(line) for line in sbatch.read_text().splitlines()]
    tuned = next(call for call in calls if _options(call)["job-name"] == "lightning.tuned_cnn")
    assert _options(tuned)["dependency"] == "afterok:102"


def test_a_dry_run_prints_the_jobs_and_needs_no_sbatch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    assert main([str(write_plan(tmp_path)), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and lines[0].startswith("lightning.first_cnn: sbatch --parsable")
    assert any("--dependency=afterok:{lightning.search}" in line for line in lines)
    assert not (tmp_path / "shared out").exists()


def _broken(tmp_path: Path, change) -> Path:
    path = write_plan(tmp_path)
    plan = json.loads(path.read_text())
    change(plan)
    path.write_text(json.dumps(plan))
    return path


def _cycle(plan):
    plan["entries"][0]["after"] = ["lightning.report_check"]


BAD = {
    "no file": (lambda tmp: tmp / "missing.json", "is no file; write the plan first with run_lab.py"),
    "not JSON": (lambda tmp: (tmp / "p.json").write_text("{entries") and tmp / "p.json", "is not a plan file"),
    "no entries": (lambda tmp: _broken(tmp, lambda p: p.pop("entries")), 'has no "entries" list'),
    "unknown dependency": (lambda tmp: _broken(tmp, lambda p: p["entries"][3].update(after=["lightning.gone"])),
                           "waits for lightning.gone, which is not in the plan"),
    "cycle": (lambda tmp: _broken(tmp, _cycle), "wait for each other"),
    "a search without workers": (lambda tmp: _broken(tmp, lambda p: p["entries"][2].pop("workers")),
                                 "a search needs at least 1 worker"),
    "no command": (lambda tmp: _broken(tmp, lambda p: p["entries"][1].update(command="python run_lab.py")),
                   "has no command"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_plan_is_one_sentence_and_exit_2_before_any_job(case, tmp_path, sbatch, capsys):
    make, message = BAD[case]
    assert main([str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and not sbatch.exists() and not (tmp_path / "shared out").exists()


def test_no_sbatch_on_path_is_one_sentence(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main([str(write_plan(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err == "error: sbatch is not on PATH: run this on a SLURM login node, or add --dry-run to see the jobs.\n"
    assert not (tmp_path / "shared out").exists()


def test_a_refused_submission_names_the_jobs_to_cancel(tmp_path, sbatch, monkeypatch, capsys):
    monkeypatch.setenv("SBATCH_FAIL_AT", "3")
    assert main([str(write_plan(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sbatch refused entry lightning.search (sbatch: error: Batch job submission failed")
    assert "cancel the 2 job(s) already submitted with `scancel 100 101`, then submit again." in err


# --- the search entries' job array ------------------------------------------------------------------------------

def _task(out: Path, task: int, report: Path) -> subprocess.Popen:
    env = {**os.environ, "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": str(task), "LAB_CHIEF_WAIT_S": "20",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    record = ("import json, os, sys; print(json.dumps([os.environ[k] for k in ('KERASTUNER_TUNER_ID', "
              "'KERASTUNER_ORACLE_IP', 'KERASTUNER_ORACLE_PORT')] + sys.argv[1:]))")
    return subprocess.Popen(["bash", str(SEARCH_SCRIPT), str(out), sys.executable, "-c", record, "--step", "x y"],
                            env=env, stdout=report.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def test_the_search_array_makes_task_0_the_chief_and_the_others_its_workers(tmp_path):
    out = tmp_path / "shared out"
    tasks = []
    try:
        for task in (1, 2, 0):  # workers first: they wait for the chief's address
            tasks.append(_task(out, task, tmp_path / f"task{task}.txt"))
        assert [task.wait(timeout=30) for task in tasks] == [0, 0, 0]
    finally:
        for task in tasks:
            if task.poll() is None:
                os.killpg(task.pid, signal.SIGKILL)
                task.wait()
    seen = {i: json.loads((tmp_path / f"task{i}.txt").read_text()) for i in (0, 1, 2)}
    assert [seen[i][0] for i in (0, 1, 2)] == ["chief", "tuner1", "tuner2"]
    assert len({tuple(seen[i][1:3]) for i in (0, 1, 2)}) == 1 and int(seen[0][2]) > 0  # one address for all
    assert all(seen[i][3:] == ["--step", "x y"] for i in (0, 1, 2))  # the entry's command, its words kept
    assert (out / "search-chief-77").read_text().split() == seen[0][1:3]
