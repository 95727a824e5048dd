"""How every command line of the project ends: a LabError is one line on stderr and exit code 2."""
from __future__ import annotations

import sys
from typing import Callable, TypeVar

from core.errors import LabError

T = TypeVar("T")


def run_command(action: Callable[[], T], on_interrupt: str) -> tuple[int, T | None]:
    """(exit code, action's result): 0 on success, 2 on a LabError, 130 on Ctrl-C (after on_interrupt)."""
    try:
        return 0, action()
    except LabError as e:
        if not getattr(e, "reported", False):
            print(f"error: {e}", file=sys.stderr)
        return e.exit_code, None
    except KeyboardInterrupt:
        print(f"\ninterrupted: {on_interrupt}", file=sys.stderr)
        return 130, None
