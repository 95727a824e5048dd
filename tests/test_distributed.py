"""Several devices give the results of one: Lightning DDP on 2 CPU processes (gloo), Keras MirroredStrategy on 2
logical CPU devices, torchrun; one run folder written by rank 0; the refusals of what cannot work.

Each run is a process of its own, in its own session (the `spawn` fixture kills what is left), with a short
process-group timeout, so that a rank left waiting fails the test instead of hanging it.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from core.errors import LabError
from lab.records.rundirs import versions

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
# 261 images in batches of 32: 8 full batches and one of 5, split 3 + 2 over two replicas, so the loss weighting
# is exercised; no dropout or batch norm in the first CNN, so one and two replicas can agree to float precision.
SMALL_RUN = ["--dataset", "digits", "--model", "first_cnn", "--filters", "8", "--train-images", "261",
             "--batch-size", "32", "--epochs", "1", "--accelerator", "cpu"]


def run_command(spawn, args: list, out: Path, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB_DDP_TIMEOUT_S": "60", "PYTHONPATH": str(ROOT)}
    process = spawn([*args, "--out", out], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    text=True)
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


def only_run(out: Path, backend: str) -> Path:
    """The one run folder under out, with its one results.json and report."""
    experiments = list(out.iterdir())
    assert len(experiments) == 1, experiments
    runs = versions(experiments[0] / backend)
    assert len(runs) == 1, runs
    run_dir = runs[0][1]
    assert len(list(out.rglob("results.json"))) == len(list(out.rglob("report.md"))) == 1
    assert len(list(out.rglob("settings.json"))) == 1
    return run_dir


def lightning_weights(run_dir: Path) -> dict:
    import torch

    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def assert_same_run(one: Path, two: Path) -> None:
    """Same history (val/acc exactly) and test accuracy; the world size and batches recorded."""
    first, second = results(one), results(two)
    assert [r["val/acc"] for r in first["history"]] == [r["val/acc"] for r in second["history"]]
    assert first["test"]["accuracy"] == second["test"]["accuracy"]
    assert first["distributed"] == {"world_size": 1, "num_nodes": 1, "global_batch": 32, "per_device_batch": 32}
    assert second["distributed"] == {"world_size": 2, "num_nodes": 1, "global_batch": 32, "per_device_batch": 16}


def run_here(main, args: list, out: Path, capsys) -> str:
    """The one-device reference, run in this process (its frameworks are loaded already)."""
    from conftest import call_main

    code, stdout, err = call_main(main, [*args, "--out", str(out)], capsys)
    assert code == 0, err[-3000:]
    return stdout


@pytest.mark.multiprocess
def test_lightning_ddp_on_two_processes_matches_one(spawn, tmp_path, capsys):
    import train_lightning

    one = run_here(train_lightning.main, [*SMALL_RUN, "--devices", "1"], tmp_path / "one", capsys)
    two = run_command(spawn, ["train_lightning.py", *SMALL_RUN, "--devices", "2"], tmp_path / "two")
    run_one, run_two = only_run(tmp_path / "one", "lightning"), only_run(tmp_path / "two", "lightning")
    a, b = lightning_weights(run_one), lightning_weights(run_two)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), rtol=0, atol=2e-5, err_msg=name)
    assert_same_run(run_one, run_two)
    assert results(run_two)["device"] == "cpu x2"
    assert two.stdout.count("test accuracy") == 1  # only rank 0 prints
    assert two.stdout.count("epoch 1/") == 1 and "\r" not in two.stdout  # one plain line per epoch into a pipe
    assert one.count("test accuracy") == 1


@pytest.mark.distributed  # 40 s: make test-distributed
def test_keras_mirrored_on_two_cpu_devices_matches_one(spawn, tmp_path):
    # both in processes of their own: a Lightning run in this process may have stubbed TensorBoard's TensorFlow
    run_command(spawn, ["train_keras.py", *SMALL_RUN, "--devices", "1"], tmp_path / "one")
    run_command(spawn, ["train_keras.py", *SMALL_RUN, "--devices", "2"], tmp_path / "two")
    run_one, run_two = only_run(tmp_path / "one", "keras"), only_run(tmp_path / "two", "keras")
    a, b = keras_weights(run_one), keras_weights(run_two)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=0, atol=2e-5)
    assert_same_run(run_one, run_two)


def keras_weights(run_dir: Path) -> list[np.ndarray]:
    from callbacks.keras_checkpoint import find_last
    from core.frameworks import keras

    return keras.models.load_model(find_last(run_dir / "checkpoints")[0][0]).get_weights()


@pytest.mark.distributed
def test_torchrun_leaves_one_complete_run(spawn, tmp_path):
    out = run_command(spawn, ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              "train_lightning.py", *SMALL_RUN], tmp_path)
    run_dir = only_run(tmp_path, "lightning")
    assert results(run_dir)["distributed"]["world_size"] == 2
    assert out.stdout.count("test accuracy") == 1


CNN = ["--dataset", "digits", "--model", "cnn", "--filters", "4", "--dense-units", "16", "--padding", "same",
       "--dropout", "0", "--batch-size", "32", "--accelerator", "cpu"]


@pytest.mark.distributed
def test_lightning_transfer_on_two_processes_matches_one(spawn, tmp_path):
    """Feature extraction from an earlier run's weights, then fine-tuning: the top block is unfrozen at epoch 2,
    after DDP wrapped the model, and must train in step on both ranks (Lightning-AI/pytorch-lightning#20340)."""
    run_command(spawn, ["train_lightning.py", *CNN, "--epochs", "1"], tmp_path / "pre")
    transfer = ["train_lightning.py", *CNN, "--weights", only_run(tmp_path / "pre", "lightning"), "--epochs", "1",
                "--finetune-epochs", "1", "--finetune-lr", "0.01", "--unfreeze", "1", "--train-images", "261"]
    run_command(spawn, [*transfer, "--devices", "1"], tmp_path / "one")
    run_command(spawn, [*transfer, "--devices", "2"], tmp_path / "two")
    run_one, run_two = only_run(tmp_path / "one", "lightning"), only_run(tmp_path / "two", "lightning")
    a, b = lightning_weights(run_one), lightning_weights(run_two)
    for name in a:
        np.testing.assert_allclose(a[name].numpy(), b[name].numpy(), rtol=0, atol=2e-5, err_msg=name)
    assert_same_run(run_one, run_two)
    phases = results(run_two)["extra"]["phases"]
    assert [p["test_acc"] for p in phases] == [p["test_acc"] for p in results(run_one)["extra"]["phases"]]


@pytest.mark.distributed
def test_keras_sync_batchnorm_on_two_cpu_devices_matches_one(spawn, tmp_path):
    """Synchronised BatchNorm takes its statistics over the global batch, as one device does. (Lightning's
    --sync-batchnorm needs GPUs: bench/gpu_check.sh runs it where there are two.)"""
    # SGD: a convolution's bias before BatchNorm has a gradient of float noise, which Adam would scale up to lr.
    args = ["train_keras.py", *CNN, "--batch-norm", "true", "--sync-batchnorm", "true", "--train-images", "261",
            "--epochs", "1", "--optimizer", "sgd", "--lr", "0.05"]
    run_command(spawn, [*args, "--devices", "1"], tmp_path / "one")
    run_command(spawn, [*args, "--devices", "2"], tmp_path / "two")
    a, b = keras_weights(only_run(tmp_path / "one", "keras")), keras_weights(only_run(tmp_path / "two", "keras"))
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=0, atol=2e-5)


@pytest.mark.distributed
def test_ddp_spawn_leaves_one_complete_run(spawn, tmp_path):
    run_command(spawn, ["train_lightning.py", *SMALL_RUN, "--devices", "2", "--strategy", "ddp_spawn"], tmp_path)
    run_dir = only_run(tmp_path, "lightning")
    assert len(results(run_dir)["history"]) == 1 and results(run_dir)["distributed"]["world_size"] == 2


@pytest.mark.distributed
def test_a_killed_ddp_run_resumes_on_two_processes(spawn, tmp_path):
    args = ["train_lightning.py", *SMALL_RUN, "--devices", "2", "--epochs", "3", "--out", tmp_path]
    env = {**os.environ, "LAB_DDP_TIMEOUT_S": "60", "PYTHONPATH": str(ROOT)}
    process = spawn(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any(tmp_path.rglob("last.ckpt")) or process.poll() is not None)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, 9)
    process.wait()
    assert not any(tmp_path.rglob("results.json"))
    run_command(spawn, [*args[:-2], "--resume"], tmp_path)
    run_dir = only_run(tmp_path, "lightning")
    assert [r["epoch"] for r in results(run_dir)["history"]] == [1, 2, 3]


@pytest.mark.distributed
def test_srun_environment_is_detected(spawn, tmp_path):
    """Two processes with the variables srun sets for a 2-task job step on one node."""
    port = free_port()
    env = {**os.environ, "LAB_DDP_TIMEOUT_S": "60", "PYTHONPATH": str(ROOT), "SLURM_NTASKS": "2",
           "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1", "SLURM_NODEID": "0", "SLURM_JOB_NAME": "lab",
           "SLURM_JOB_ID": "1", "SLURM_NODELIST": "localhost", "MASTER_PORT": str(port)}
    processes = [spawn(["train_lightning.py", *SMALL_RUN, "--out", tmp_path], cwd=ROOT,
                       env={**env, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [p.communicate(timeout=TIMEOUT_S) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    run_dir = only_run(tmp_path, "lightning")
    assert results(run_dir)["distributed"]["world_size"] == 2
    assert outputs[0][0].count("test accuracy") == 1 and "test accuracy" not in outputs[1][0]


def wait_for(condition, timeout: float = TIMEOUT_S, every: float = 0.2) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- in this process: plans, launch environments, refusals -------------------------------------------------------

def test_launchers_are_recognised_from_their_variables():
    from lab.config.launch import detect

    torchrun = {"RANK": "3", "GROUP_RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4"}
    assert detect(torchrun).kind == "torchrun"
    assert (detect(torchrun).rank, detect(torchrun).per_node, detect(torchrun).nodes) == (3, 2, 2)
    slurm = {"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_TASKS_PER_NODE": "4(x2)", "SLURM_NNODES": "2",
             "SLURM_JOB_NAME": "lab"}
    assert (detect(slurm).kind, detect(slurm).rank, detect(slurm).per_node, detect(slurm).nodes) == ("slurm", 5, 4, 2)
    assert detect({**slurm, "SLURM_JOB_NAME": "bash"}).kind is None  # an interactive shell, not a job step
    assert detect(slurm).several and not detect({"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "lab"}).several
    assert detect({"LOCAL_RANK": "1", "NODE_RANK": "0", "MASTER_ADDR": "x"}).kind == "lightning"
    assert detect({"MASTER_ADDR": "x", "NODE_RANK": "1"}).kind == "manual"
    assert detect({}).kind is None


def test_a_plan_follows_the_launcher_and_refuses_what_disagrees():
    from lab.config.devices import plan_devices
    from lab.config.launch import Launch
    from lab.config.settings import make_settings

    torchrun = Launch("torchrun", rank=3, per_node=2, nodes=2)
    plan = plan_devices(make_settings({"accelerator": "cpu", "batch_size": 32}), 0, torchrun)
    assert (plan.per_node, plan.num_nodes, plan.world_size, plan.global_rank) == (2, 2, 4, 3)
    assert plan.batches(32) == {"world_size": 4, "num_nodes": 2, "global_batch": 32, "per_device_batch": 8}
    assert plan.describe() == "cpu x2 x 2 nodes"
    for settings, message in (({"devices": "3"}, "started 2 process"), ({"num_nodes": 3}, "--num-nodes is 3"),
                              ({"batch_size": 30}, "does not divide over 4")):
        with pytest.raises(LabError, match=message):
            plan_devices(make_settings({"accelerator": "cpu", **settings}), 0, torchrun)
    with pytest.raises(LabError, match="has only 1"):
        plan_devices(make_settings({"gpus": 2}), 1, Launch(None))


def test_commands_of_many_runs_refuse_several_processes_but_not_a_one_task_job():
    from lab.config.devices import require_one_device
    from lab.config.launch import Launch
    from lab.config.settings import make_settings

    require_one_device(make_settings({}), Launch("slurm", rank=0, per_node=1, nodes=1))  # sbatch, no srun
    for launch in (Launch("slurm", 0, 2, 1), Launch("torchrun", 1, 2, 1), Launch("lightning")):
        with pytest.raises(LabError, match="one after another on one device"):
            require_one_device(make_settings({}), launch)
    with pytest.raises(LabError, match="one after another on one device"):
        require_one_device(make_settings({"gpus": 2}), Launch(None))


@pytest.mark.parametrize("argv, message", [
    (["train_keras.py", "--strategy", "ddp"], "is Lightning's"),
    (["train_lightning.py", "--accelerator", "cpu", "--devices", "2", "--sync-batchnorm", "true"], "CUDA only"),
    (["run_lab.py", "--accelerator", "cpu", "--devices", "64"], "core(s)"),
    (["augment_compare.py", "--accelerator", "cpu", "--devices", "2"], "one after another on one device"),
    (["tune_lightning.py", "--accelerator", "cpu", "--devices", "2"], "one after another on one device"),
])
def test_what_cannot_run_on_several_devices_is_refused(argv, message, tmp_path, monkeypatch, capsys):
    import importlib

    from conftest import call_main

    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(argv[0].removesuffix(".py")).main
    code, _, err = call_main(main, [*argv[1:], "--out", str(tmp_path / "runs")], capsys)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.json"))


def test_keras_refuses_several_workers(tmp_path, monkeypatch, capsys):
    import train_keras
    from conftest import call_main

    cluster = {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    code, _, err = call_main(train_keras.main, ["--out", str(tmp_path)], capsys)
    assert code == 2 and "keras-team/keras#20585" in err and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_an_images_augmentation_does_not_depend_on_the_number_of_replicas():
    import torch

    from datamodules.batching import replica_slice
    from datamodules.torch_data import Part
    from lab.config.settings import make_settings
    from lightning_modules.components.augment import build_augment

    augment = build_augment(make_settings({"flip": True, "crop_pad": 2, "rotate": 10, "cutout": 3}))
    images = torch.randint(0, 256, (7, 8, 8, 1), dtype=torch.uint8)
    whole = augment(images, 5)
    for world in (2, 3):
        slices = [replica_slice(7, rank, world) for rank in range(world)]
        parts = [augment(images[s], 5, Part(s.start, 7)) for s in slices]
        assert torch.equal(torch.cat(parts), whole)
    assert not torch.equal(augment(images[:3], 5), whole[:3])  # drawn for 3 images, not for the global batch
