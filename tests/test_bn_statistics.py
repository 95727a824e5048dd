"""bench.bn_statistics: batch norm's running statistics recomputed as a plain average, and its command."""
from __future__ import annotations

import json

import pytest
import torch

import core.frameworks
from bench import bn_statistics
from lab.run import train_cli


def test_the_running_statistics_become_the_plain_average_of_the_images():
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm2d(3, momentum=0.01)
    norm.running_mean.fill_(5.0)  # stale statistics, far from the data's
    norm.running_var.fill_(9.0)
    images = torch.randn(40, 3, 4, 4) * 2 + 1
    bn_statistics.recompute(norm, images, batch=8, bf16=False)
    per_batch = images.view(5, 8, 3, 4, 4)
    assert torch.allclose(norm.running_mean, per_batch.mean(dim=(1, 3, 4)).mean(0), atol=1e-5)
    assert torch.allclose(norm.running_var, per_batch.var(dim=(1, 3, 4), unbiased=True).mean(0), atol=1e-4)
    assert not norm.training


def test_the_statistics_come_from_a_sample_of_every_class_not_the_splits_first_images():
    labels = torch.arange(10).repeat_interleave(500).numpy()  # stored class by class, as the splits are
    chosen = bn_statistics.sample(len(labels), 512)
    assert len(set(chosen)) == 512 and set(labels[chosen]) == set(range(10))


def test_the_command_scores_a_lightning_run_as_trained_and_recomputed(tmp_path, capsys):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(core.frameworks, "without_tensorflow", lambda: None)
        assert train_cli.main("lightning", ["--dataset", "digits", "--model", "cifar_cnn", "--width", "4", "--depth",
                                            "1", "--epochs", "1", "--train-images", "100", "--profile", "false",
                                            "--out", str(tmp_path), "--progress", "none"]) == 0
    capsys.readouterr()
    bn_statistics.main([str(tmp_path / "cifar_cnn-digits" / "lightning" / "version_0"), "--images", "64"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["precision"] == "32" and "recomputed_bf16" not in row
    assert 0 <= row["as_trained"] <= 100 and 0 <= row["recomputed_fp32"] <= 100
