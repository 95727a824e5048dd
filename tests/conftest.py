"""Shared fixtures: a private dataset cache and a tiny image-folder dataset written into tmp_path."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def lab_cache(tmp_path, monkeypatch) -> Path:
    """Point the dataset cache (downloads, decoded folder arrays) at a fresh folder for this test."""
    cache = tmp_path / "lab-cache"
    monkeypatch.setenv("DUAL_LAB_CACHE", str(cache))
    return cache


def write_png(path: Path, array: np.ndarray) -> None:
    """Write an H x W (gray) or H x W x 3 (RGB) uint8 array as a PNG, creating folders."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_image_tree(root: Path, classes=("cat", "dog"), per_class: int = 3, size=(6, 5), seed: int = 0,
                     gray: bool = False) -> dict[str, np.ndarray]:
    """Write root/<class>/<i>.png with random pixels; returns relative path -> the array written."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0]) if gray else (size[1], size[0], 3)
    written = {}
    for name in classes:
        for i in range(per_class):
            array = rng.integers(0, 256, shape, dtype=np.uint8)
            write_png(root / name / f"{i:03d}.png", array)
            written[f"{name}/{i:03d}.png"] = array
    return written


@pytest.fixture
def tiny_folder(tmp_path, lab_cache) -> Path:
    """A two-class train/test PNG tree (3 + 2 RGB 6x5 images per class) for `--dataset folder` tests."""
    root = tmp_path / "tiny-folder"
    write_image_tree(root / "train", per_class=3, seed=1)
    write_image_tree(root / "test", per_class=2, seed=2)
    return root


def call_main(main, argv, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of an entry point's main(argv), run in this process as the command line
    would end: argparse's errors and --help leave through SystemExit, the rest through main's return value."""
    capsys.readouterr()  # drop whatever came before
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return 0 if code is None else code, out, err


@pytest.fixture
def spawn():
    """Start a command in its own session (process group); every group still alive at the test's end is killed.
    For the tests whose point is a process boundary: a run killed mid-way."""
    processes = []

    def start(args, **kwargs):
        process = subprocess.Popen([sys.executable, *map(str, args)], start_new_session=True, **kwargs)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
