"""The benchmarks' fair hand-written loop (bench.common.fair_torch_loop) records what the Lightning path records:
the same training and validation loss and accuracy, epoch by epoch, from the same initial weights and batches.
So the speed ratio against it measures the framework and nothing else, and the Lightning module's metrics
equal the ones computed by hand."""
from __future__ import annotations

import pytest

from lab.config.settings import make_settings


def test_the_fair_loop_records_what_lightning_records(tmp_path):
    from bench.common import fair_torch_loop
    from datamodules import load_splits
    from lab.records.recording import EPOCH_TAGS
    from lab.run.backend import get_backend
    from lightning_modules.training import train

    settings = make_settings({"dataset": "digits", "epochs": 2, "profile": False})
    splits = load_splits("digits")
    lightning = train(settings, splits, tmp_path, get_backend("lightning").plan_devices(settings)).record.history
    by_hand, _ = fair_torch_loop(settings, splits, settings.epochs)
    assert [row["epoch"] for row in lightning] == [row["epoch"] for row in by_hand] == [1, 2]
    for mine, theirs in zip(lightning, by_hand):
        for tag in EPOCH_TAGS[:-1]:
            assert mine[tag] == pytest.approx(theirs[tag], rel=1e-5), (mine["epoch"], tag)
