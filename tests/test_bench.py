"""The benchmarks' machinery: bench.speed --paired's turns (bench.common.run_paired and Baton)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.common import REPO, run_paired

pytestmark = pytest.mark.multiprocess

CHILD = """
import json, sys, time
from bench.common import Baton
baton, spans = Baton(), []
if sys.argv[2] == "fail":
    sys.exit(3)
for epoch in range(3):
    baton.turn()
    start = time.monotonic()
    time.sleep(0.05)
    spans.append((start, time.monotonic()))
json.dump(spans, open(sys.argv[1], "w"))
baton.end()
"""


def _children(tmp_path: Path, kinds: dict[str, str]) -> dict:
    return {way: ([sys.executable, "-c", CHILD, str(tmp_path / f"{way}.json"), kind], tmp_path / f"{way}.json",
                  tmp_path / f"{way}.log", REPO, {}) for way, kind in kinds.items()}


def test_paired_ways_take_turns_one_epoch_each(tmp_path):
    results = run_paired(_children(tmp_path, {"a": "ok", "b": "ok", "c": "ok"}))
    spans = sorted((start, end, way) for way, result in results.items() for start, end in result)
    assert [way for _, _, way in spans] == ["a", "b", "c"] * 3
    assert all(end <= next_start for (_, end, _), (next_start, _, _) in zip(spans, spans[1:]))


def test_a_paired_way_that_fails_ends_the_benchmark_and_leaves_no_process(tmp_path):
    with pytest.raises(SystemExit, match=r"b failed \(exit 3\); its output: .*b\.log"):
        run_paired(_children(tmp_path, {"a": "ok", "b": "fail", "c": "ok"}))
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if _reads(p) and str(tmp_path) in _reads(p)]


def _reads(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
