"""run_lab.py's progress over the whole lab: which run of how many, and an estimate of the time left."""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from lab.records.results import RESULTS_FILE, load_results


@dataclass(frozen=True)
class Step:
    """One run of the lab: an experiment of a section, on a backend (section 1.4's search counts as one)."""

    backend: str
    section: str
    key: str  # the experiment, e.g. "first_cnn"; runs of the same key are of one kind
    label: str  # as the report names it, e.g. "first CNN"


def recorded_seconds(run_dir: Path) -> float | None:
    """The training time a finished run recorded: what a reused run would have cost."""
    if not (Path(run_dir) / RESULTS_FILE).exists():
        return None
    return load_results(run_dir)["timing"].get("total_s")


def left_estimate(remaining: list[Step], seconds: dict[str, list[float]]) -> tuple[float, int]:
    """(seconds the remaining runs should take, how many of them are of a kind not timed yet). A kind's time
    is the mean of its runs so far, on either backend."""
    total, untimed = 0.0, 0
    for step in remaining:
        times = seconds.get(step.key)
        if times:
            total += sum(times) / len(times)
        else:
            untimed += 1
    return total, untimed


def duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{seconds:.0f} s" if seconds < 90 else (f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h")


class LabProgress:
    """Prints "run k of n: section, model, backend" before each run, and after it, once some kind has been timed,
    the time the remaining runs should take (from the runs done or reused)."""

    def __init__(self, steps: list[Step], console=None):
        from rich.console import Console

        self.steps, self.console = steps, console or Console(highlight=False)
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.done = 0
        self._started = 0.0

    def begin(self, step: Step) -> None:
        number = self.steps.index(step) + 1
        self.console.print(f"[bold cyan]run {number} of {len(self.steps)}[/]: {step.section}, {step.label}, "
                           f"{step.backend}")
        self._started = time.perf_counter()

    def end(self, step: Step, what: str, run_dir: Path) -> None:
        """After a run: `what` is ensure_run's answer; a reused run counts at its recorded training time."""
        took = time.perf_counter() - self._started
        recorded = recorded_seconds(run_dir) if what == "reused" else None
        self.seconds[step.key].append(took if recorded is None else recorded)
        self.done = self.steps.index(step) + 1
        line = self.left_line()
        if line:
            self.console.print(f"[dim]{line}[/]")

    def left_line(self) -> str | None:
        remaining = self.steps[self.done:]
        if not remaining:
            return None
        total, untimed = left_estimate(remaining, self.seconds)
        if untimed == len(remaining):
            return None
        more = f", plus {untimed} run(s) of a kind not timed yet" if untimed else ""
        return f"time left: about {duration(total)} for {len(remaining) - untimed} run(s){more}"
