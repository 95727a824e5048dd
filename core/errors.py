"""The one error type users see: a clear sentence, exit code 2, no traceback; and one-sentence warnings."""
import sys


class LabError(Exception):
    """Bad input or missing data. The message is one sentence saying what is wrong and how to fix it."""

    exit_code = 2


def one_line(error: BaseException, limit: int = 160, line: int = 0) -> str:
    """One line of an exception's message (the first, or index `line`), cut to `limit` characters, so that
    a LabError quoting it stays one sentence; the exception's type when it has no message."""
    lines = [text.strip() for text in str(error).splitlines() if text.strip()]
    return lines[line][:limit].rstrip(" .;") if lines else type(error).__name__


class RunStopped(LabError):
    """A run stopped part-way by something outside it (a process of a DDP run died): one sentence saying what and
    how to continue, exit code 1; its folder is kept for --resume."""

    exit_code = 1

    def __init__(self, message: str, reported: bool = False):
        super().__init__(message)
        self.reported = reported  # already written to stderr where it was found (a signal could end the process)


_warned: set[str] = set()


def warn_once(sentence: str) -> None:
    """A one-sentence warning on stderr, once per process however often the run is planned (the lab plans many)."""
    if sentence not in _warned:
        _warned.add(sentence)
        print(f"warning: {sentence}", file=sys.stderr)
