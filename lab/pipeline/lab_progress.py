"""run_lab.py's progress over the whole lab: which jobs train on which device, how many are done, and the time
left on N devices, from each job's estimate (lab.pipeline.estimates; the pool keys them by job ID)."""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path


def duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{seconds:.0f} s" if seconds < 90 else (f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h")


def time_left(pending: list[str], running: list[tuple[str, float]], guess: dict[str, float], devices: int) \
        -> tuple[float, int]:
    """(seconds the lab should still take on `devices` devices, jobs with no estimate). pending: the keys of the
    jobs not started (the pool's: job IDs); running: (key, seconds it has trained so far) of each job training."""
    total, unknown = 0.0, 0
    for kind in pending:
        if kind in guess:
            total += guess[kind]
        else:
            unknown += 1
    for kind, elapsed in running:
        if kind in guess:
            total += max(0.0, guess[kind] - elapsed)
        else:
            unknown += 1
    return total / max(1, devices), unknown


class PoolProgress:
    """One line when a job starts or ends: done out of total, which jobs train where, and the time left."""

    def __init__(self, total: int, devices: int, guess: dict[str, float], console=None):
        from rich.console import Console

        self.total, self.devices, self.guess = total, devices, dict(guess)
        self.console = console or Console(highlight=False, soft_wrap=True)  # a log keeps each line whole
        self.done = 0
        self.seconds: dict[str, list[float]] = defaultdict(list)

    def started(self, job_id: str, where: list[str], log: Path) -> None:
        self.console.print(f"[bold cyan]start[/] {job_id} on {', '.join(where)} (log: {log})")

    def joined(self, job_id: str, device: str, log: Path) -> None:
        self.console.print(f"[bold cyan]one more worker[/] for {job_id} on {device} (log: {log})")

    def ended(self, job_id: str, kind: str, outcome: str, seconds: float | None) -> None:
        """outcome: 'done', 'reused', 'failed' or 'skipped'; seconds: the time it trained, which also times its key."""
        self.done += 1
        if outcome == "done" and seconds is not None:
            self.seconds[kind].append(seconds)
            self.guess[kind] = sum(self.seconds[kind]) / len(self.seconds[kind])
        took = f" in {duration(seconds)}" if seconds is not None and outcome == "done" else ""
        colour = {"failed": "bold red", "skipped": "yellow"}.get(outcome, "green")
        self.console.print(f"[{colour}]{outcome}[/] {job_id}{took} [{self.done}/{self.total}]")

    def status(self, training: dict[str, tuple[str, list[str], float]], pending: list[str]) -> None:
        """training: job ID -> (key, its devices, its start on time.monotonic()); pending: keys not started."""
        now = time.monotonic()
        where = "; ".join(f"{job} on {', '.join(devs)}" for job, (_, devs, _) in training.items()) or "nothing"
        left, unknown = time_left(pending, [(k, now - t) for k, _, t in training.values()], self.guess, self.devices)
        if unknown and unknown == len(pending) + len(training):
            estimate = "no estimate"
        else:
            estimate = f"about {duration(left)} left on {self.devices} device(s)" + \
                (f", plus {unknown} job(s) with no estimate" if unknown else "")
        self.console.print(f"[dim]{self.done}/{self.total} done; training: {where}; {estimate}[/]")
