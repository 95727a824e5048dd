"""run_lab.py on N devices: every job in a process of its own (lab.pipeline.pool), one job with --step, the plan
for clusters (--plan), the faults (a failed job, SIGTERM) and the bad input. Children do not see monkeypatches,
so these labs use the `tiny` preset."""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_lab import _colour_tree

from conftest import call_main
from core import locks
from core.errors import LabError
from lab.pipeline.jobs import Job, build_jobs, dependents, stages
from lab.pipeline.lab_progress import time_left
from lab.pipeline.plan_file import PLAN_LAB
from lab.pipeline.pool import JOBS_LOG
from lab.pipeline.whole_lab import build_parser, main, make_lab

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


def _lab(data: Path, out: Path, sections: str, backends: str = "lightning") -> list[str]:
    return ["--preset", "tiny", "--backends", backends, "--sections", sections, "--mnist-dataset", "digits",
            "--cifar-dataset", "folder", "--data-dir", str(data), "--out", str(out), "--no-spread-seed"]


def _spans(out: Path) -> list[tuple[float, float, str]]:
    """(start, end, job) of every job a pool started, from its jobs log."""
    events = [json.loads(line) for line in (out / "logs" / JOBS_LOG).read_text().splitlines()]
    starts = {e["job"]: e["time"] for e in events if e["event"] == "start"}
    return [(starts[e["job"]], e["time"], e["job"]) for e in events if e["event"] == "end"]


def _most_at_once(spans: list[tuple[float, float, str]]) -> int:
    edges = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans])
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def _folders(out: Path) -> dict[str, float]:
    """Every file of the runs and searches under `out`, with its modification time."""
    files = [*out.glob("*/*/version_*/**/*"), *out.glob("tune-*/*/tuning/**/*")]
    return {str(p.relative_to(out)): p.stat().st_mtime for p in files if p.is_file()}


def _report(out: Path) -> str:
    """The lab report without what differs from run to run: times."""
    return re.sub(r"\d+\.\d+s\b", "<time>", (out / "lab-report.md").read_text())


def test_a_lab_on_two_cpu_devices_and_one_on_one_reuse_each_others_runs(tmp_path, lab_cache, capsys):
    out = tmp_path / "lab"
    lab = ["--preset", "tiny", "--backends", "lightning", "--sections", "1", "--mnist-dataset", "digits",
           "--out", str(out), "--no-spread-seed"]
    assert main([*lab, "--accelerator", "cpu", "--devices", "2"]) == 0
    printed = capsys.readouterr().out
    assert "start lightning.search on cpu0, cpu1" in printed and "left on 2 device(s)" in printed  # chief + 2 workers
    spans = _spans(out)
    assert sorted(job for _, _, job in spans) == ["lightning.first_cnn", "lightning.mlp", "lightning.search",
                                                  "lightning.tuned_cnn"]
    assert _most_at_once(spans) == 2  # first_cnn and mlp together, never more than 2 jobs training at once
    workers = {row["worker"] for row in csv.DictReader(open(out / "tune-digits-tiny/lightning/tuning/trials.csv"))}
    assert workers and workers <= {"tuner0", "tuner1"}  # trials this short may all go to the first worker that asks
    for worker in ("tuner0", "tuner1"):
        assert "ready, waiting for the chief" in (out / "logs" / f"lightning.search.{worker}.log").read_text()
    saved = [json.loads(p.read_text()) for p in out.glob("*/lightning/version_*/settings.json")]
    assert len(saved) == 3 and {(s["accelerator"], s["devices"], s["gpus"]) for s in saved} == {("auto", "auto", None)}
    for results in (json.loads(p.read_text()) for p in out.glob("*/lightning/version_*/results.json")):
        assert results["inference"] is None and "2 runs at once" in results["inference_skipped"]  # cores shared
    before, report = _folders(out), _report(out)
    assert "### 1.4. Model improvement" in report
    assert main([*lab, "--devices", "1"]) == 0  # the one-device lab: everything reused, no job started
    assert len(_spans(out)) == len(spans) and _folders(out) == before
    assert _report(out) == report


def test_every_device_count_saves_the_settings_of_the_one_device_lab(tmp_path):
    base = ["--preset", "tiny", "--backends", "lightning", "--sections", "1", "--mnist-dataset", "digits",
            "--out", str(tmp_path)]
    labs = [make_lab(build_parser().parse_args([*base, *more]))[0]
            for more in ([], ["--devices", "1"], ["--accelerator", "cpu", "--devices", "2"], ["--gpus", "0"])]
    assert all(lab.common == labs[0].common for lab in labs)
    assert labs[0].common["devices"] == "auto" and labs[0].common["gpus"] is None


def test_the_plan_is_json_and_stages_of_commands_and_a_step_runs_one_job(tmp_path, lab_cache, capsys):
    data, out, plan = _colour_tree(tmp_path / "colours"), tmp_path / "lab", tmp_path / "plan.json"
    lab = [*_lab(data, out, "1,4"), "--devices", "2"]
    assert main([*lab, "--plan", str(plan)]) == 0
    document = json.loads(plan.read_text())
    assert document["lab"] == lab and set(document) == {"lab", "entries", "stages"}
    entries = {e["id"]: e for e in document["entries"]}
    assert entries["lightning.fine_tuned"]["after"] == ["lightning.pretrained"]
    assert entries["lightning.tuned_cnn"]["after"] == ["lightning.search"]
    assert entries["lightning.search"]["kind"] == "search" and entries["lightning.search"]["workers"] == 2
    assert "workers" not in entries["lightning.mlp"] and entries["lightning.mlp"]["estimate_s"] is None
    assert entries["lightning.mlp"]["command"] == ["python", "run_lab.py", *lab, "--step", "lightning.mlp"]
    assert document["stages"] == [["lightning.search", "lightning.first_cnn", "lightning.mlp",
                                    "lightning.pretrained", "lightning.from_scratch"],
                                   ["lightning.tuned_cnn", "lightning.fine_tuned"]]
    lines = (tmp_path / "plan.json.stage2.txt").read_text().splitlines()
    assert [shlex.split(line) for line in lines] == [entries[i]["command"] for i in document["stages"][1]]
    assert [p.name for p in out.rglob("*.json")] == [PLAN_LAB]  # nothing trained: only the lab the plan is for

    code, _, err = call_main(main, [*lab, "--plan", str(plan)], capsys)  # refused: the file exists
    assert code == 2 and err.count("\n") == 1 and "--overwrite" in err
    assert main([*lab, "--plan", str(plan), "--overwrite"]) == 0

    code, _, err = call_main(main, [*lab, "--step", "lightning.fine_tuned"], capsys)
    assert code == 2 and "waits for lightning.pretrained" in err and err.count("\n") == 1
    code, _, err = call_main(main, [*lab, "--step", "keras.mlp"], capsys)  # not a job of a lightning lab
    assert code == 2 and "no job of this lab" in err and err.count("\n") == 1
    code, _, err = call_main(main, [*lab, "--seed", "7", "--step", "lightning.mlp"], capsys)  # not the plan's flags
    assert code == 2 and "another lab than the plan" in err and "runs differ" in err and err.count("\n") == 1
    assert main([*lab, "--step", "lightning.mlp"]) == 0
    assert "MLP baseline on lightning: ran" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--accelerator", "cpu", "--devices", "64"], "core(s)"),
    (["--gpus", "2"], "no usable GPU"),
    (["--step", "lightning.nothing"], "no job of this lab"),
])
def test_bad_lab_input_is_one_sentence_before_any_training(argv, message, tmp_path, capsys):
    base = ["--preset", "tiny", "--backends", "lightning", "--sections", "1", "--mnist-dataset", "digits",
            "--out", str(tmp_path / "lab")]
    code, _, err = call_main(main, [*base, *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "lab").exists() or not any((tmp_path / "lab").rglob("*.json"))


def test_a_job_another_live_process_trains_is_not_trained_again(tmp_path):
    with locks.held(tmp_path / "a.lock", "the job lightning.mlp"):
        with pytest.raises(LabError, match=f"being trained by process {os.getpid()}"):
            with locks.held(tmp_path / "a.lock", "the job lightning.mlp"):
                pass
    with locks.held(tmp_path / "a.lock", "the job lightning.mlp"):  # released: free again
        pass


def test_stages_dependents_and_the_time_left():
    jobs = [Job("a.pre", "a", "pre", "", ("t",)), Job("a.fine", "a", "fine", "", ("t",), ("a.pre",)),
            Job("a.s", "a", "search", "", ("m",)), Job("a.tuned", "a", "tuned", "", ("m",), ("a.s",)),
            Job("a.x", "a", "x", "", ("t",), ("a.fine",))]
    assert stages(jobs) == [["a.pre", "a.s"], ["a.fine", "a.tuned"], ["a.x"]]
    assert dependents(jobs, "a.pre") == {"a.fine", "a.x"}
    guess = {"pre": 100.0, "fine": 50.0}
    assert time_left(["fine", "x"], [("pre", 30.0)], guess, 2) == ((50.0 + 70.0) / 2, 1)


class _Child:
    """A started child as the pool sees it: alive until told otherwise."""

    def __init__(self, env: dict):
        self.env, self.pid, self.returncode = env, 4242, None

    def poll(self):
        return self.returncode


def test_a_device_freed_mid_search_joins_it_as_one_more_worker_while_it_has_untaken_trials(tmp_path, monkeypatch):
    import io

    from rich.console import Console

    from lab.pipeline import pool as pool_module

    started, asked = [], []
    monkeypatch.setattr(pool_module.processes, "start",
                        lambda argv, env, log: started.append(_Child(env)) or started[-1])
    room = {"trials": 1}
    monkeypatch.setattr(pool_module, "open_trials", lambda backend, first, preset, live: asked.append(live) or
                        room["trials"] - sum(w not in {"tuner0"} for w in live))
    monkeypatch.setattr(pool_module, "LOOK_S", 0.0)
    lab, _ = make_lab(build_parser().parse_args(["--preset", "tiny", "--backends", "keras", "--sections", "1",
                                                 "--mnist-dataset", "digits", "--out", str(tmp_path)]))
    jobs = build_jobs(lab)
    pool = pool_module.Pool(lab, jobs, ["cpu0", "cpu1"], [], Console(file=io.StringIO()))
    pool.logs.mkdir(parents=True)
    search = next(j for j in jobs if j.kind == "search")
    pool.free = ["cpu0"]  # the other device trains another job: the search starts on one, as chief and worker
    pool._start(search)
    running = pool.running[search.id]
    assert [c.env["KERASTUNER_TUNER_ID"] for c in started] == ["tuner0"] and running.main is None
    pool._grow_searches()  # no chief yet: nothing joins
    running.main = _Child(running.chief_env)
    pool.free = ["cpu1"]  # the other job ended, and nothing else is ready
    pool._grow_searches()
    joined = started[-1].env
    assert joined["KERASTUNER_TUNER_ID"] == "tuner1" and pool.free == [] and running.devices == ["cpu0", "cpu1"]
    assert joined["KERASTUNER_ORACLE_PORT"] == started[0].env["KERASTUNER_ORACLE_PORT"] == running.chief_env[
        "KERASTUNER_ORACLE_PORT"]
    assert [e["event"] for e in map(json.loads, (pool.logs / JOBS_LOG).read_text().splitlines())] == ["start",
                                                                                                      "worker"]
    pool.free = ["cpu2"]  # (a third device) the new worker, holding no trial yet, takes the one untaken trial
    pool._grow_searches()
    assert len(started) == 2 and pool.free == ["cpu2"] and asked[-1] == ["tuner0", "tuner1"]
    started[0].returncode = 0  # a worker that ended counts no more
    room["trials"] = 2
    pool._grow_searches()
    assert asked[-1] == ["tuner1"] and started[-1].env["KERASTUNER_TUNER_ID"] == "tuner2"


# ---- longer, multi-process: make test-distributed ---------------------------------------------------------------

def _start(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as sink:
        return subprocess.Popen([sys.executable, str(ROOT / "run_lab.py"), *argv], cwd=ROOT, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.distributed  # both backends through the plan's stages: minutes
def test_the_plans_stages_run_by_xargs_then_the_report_trains_nothing(tmp_path, lab_cache):
    data, out, plan = _colour_tree(tmp_path / "colours"), tmp_path / "lab", tmp_path / "plan.json"
    lab = _lab(data, out, "1", "keras,lightning")
    assert main([*lab, "--plan", str(plan)]) == 0
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # the plan's "python" is this one
    for stage in sorted(tmp_path.glob("plan.json.stage*.txt")):
        xargs = subprocess.Popen(f"xargs -d '\\n' -P 2 -I CMD sh -c CMD < {shlex.quote(str(stage))}", shell=True,
                                 cwd=ROOT, start_new_session=True,
                                 env={**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)})
        try:
            assert xargs.wait(timeout=2 * TIMEOUT_S) == 0
        finally:
            if xargs.poll() is None or _alive(xargs.pid):
                os.killpg(xargs.pid, signal.SIGKILL)
            xargs.wait()
    before = _folders(out)
    assert main(lab) == 0
    assert _folders(out) == before and not (out / "logs" / JOBS_LOG).exists()  # reused: nothing started
    report = (out / "lab-report.md").read_text()
    assert report.count("### 1.4. Model improvement") == 2 and "# Keras against PyTorch Lightning" in report


@pytest.mark.distributed
def test_a_failed_job_skips_its_dependents_only_and_the_same_command_continues(tmp_path, lab_cache, capsys):
    data, out = _colour_tree(tmp_path / "colours"), tmp_path / "lab"
    lab = [*_lab(data, out, "4"), "--accelerator", "cpu", "--devices", "2"]
    assert main([*_lab(data, out, "4"), "--step", "lightning.pretrained"]) == 0
    checkpoints = list((out / "pretrained-folder" / "lightning").glob("version_*/checkpoints/*.ckpt"))
    for checkpoint in checkpoints:  # the fine-tuned run starts from one, and fails for real
        checkpoint.write_bytes(b"not a checkpoint")
    assert checkpoints
    capsys.readouterr()
    assert main(lab) == 1
    err = capsys.readouterr().err
    assert re.search(r"lightning\.fine_tuned \(fine-tuned\) failed with exit code \d+; its log: \S+fine_tuned\.log",
                     err), err
    assert "from_scratch" not in err and list((out / "from_scratch-folder" / "lightning").glob("*/results.json"))
    for run in (out / "pretrained-folder" / "lightning").glob("version_*"):
        subprocess.run(["rm", "-r", str(run)], check=True)  # its run made afresh: the rerun completes
    assert main(lab) == 0 and (out / "lab-report.md").exists()


@pytest.mark.distributed
def test_sigterm_stops_every_child_within_seconds(tmp_path, lab_cache):
    data, out = _colour_tree(tmp_path / "colours"), tmp_path / "lab"
    lab = _start([*_lab(data, out, "1"), "--accelerator", "cpu", "--devices", "2"], tmp_path / "lab.log")
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and len(_started(out)) < 2:
            time.sleep(0.5)
        groups = _started(out)
        assert len(groups) >= 2, (tmp_path / "lab.log").read_text()[-3000:]
        os.kill(lab.pid, signal.SIGTERM)
        lab.wait(timeout=10)
        gone_by = time.monotonic() + 10
        while time.monotonic() < gone_by and any(_alive(g) for g in groups):
            time.sleep(0.2)
        assert not any(_alive(g) for g in groups)
        assert lab.returncode == 130
    finally:
        if lab.poll() is None:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()


def _started(out: Path) -> list[int]:
    """The process groups of the children a pool started (each child leads its own), from its jobs log."""
    try:
        lines = (out / "logs" / JOBS_LOG).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [pid for e in map(json.loads, lines) for pid in e.get("pids", [])]


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sections_that_share_an_experiment_share_its_job(tmp_path, lab_cache):
    data = _colour_tree(tmp_path / "colours")
    args = build_parser().parse_args(["--preset", "tiny", "--backends", "keras", "--sections", "2,3",
                                      "--cifar-dataset", "folder", "--data-dir", str(data), "--out", str(tmp_path)])
    jobs = build_jobs(make_lab(args)[0])
    assert [(j.id, j.sections) for j in jobs] == [("keras.cifar_cnn", ("cifar", "augmentation")),
                                                  ("keras.cifar_cnn_next_seed", ("cifar", "augmentation")),
                                                  ("keras.cifar_cnn_augmented", ("augmentation",))]
