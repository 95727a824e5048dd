"""The command line of train_lightning.py and train_keras.py: one run, every setting a flag."""
from __future__ import annotations

from core import frameworks
from core.cli import run_command
from lab.config.flags import settings_parser
from lab.run.backend import TITLES
from lab.run.runner import run


def main(backend: str, argv: list[str] | None = None) -> int:
    parser = settings_parser(f"train_{backend}.py", f"Train one lab experiment with {TITLES[backend]}; "
                             "results, figures, report and TensorBoard logs go to OUT/<experiment>/"
                             f"{backend}/version_N.")
    args = parser.parse_args(argv)
    code, run_dir = run_command(lambda: run(backend, args),
                                "finished epochs are saved; run the same command with --resume to continue.")
    if run_dir is not None:  # None: a rank of a multi-process run that writes nothing
        print(f"report: {run_dir / 'report.md'}")
    return code


def keras(argv: list[str] | None = None) -> int:
    return main("keras", argv)


def lightning(argv: list[str] | None = None) -> int:
    frameworks.without_tensorflow()  # this process never runs Keras
    return main("lightning", argv)
