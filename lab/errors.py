"""The one error type users see: a clear sentence, exit code 2, no traceback."""


class LabError(Exception):
    """Bad input or missing data. The message is one sentence saying what is wrong and how to fix it."""

    exit_code = 2
