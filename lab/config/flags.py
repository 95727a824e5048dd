"""The flag builders of every command line (training, tuning, the compare tools, the lab).

A setting's flag is built from `ExperimentSettings` alone: its type, choices, help and default come from the
dataclass, `HELP` and `CHOICES`, so no command declares them again. A command picks the settings it takes and
may give them its own help text or default.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from dataclasses import fields

from lab.config.settings import CHOICES, HELP, METAVARS, ExperimentSettings, arg_type
from lab.progress import HELP as PROGRESS_HELP
from lab.progress import MODES as PROGRESS_MODES

SETTING_NAMES = tuple(f.name for f in fields(ExperimentSettings))


class LabArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad flags in one line (no usage dump) with exit code 2."""

    def error(self, message: str):
        sys.stderr.write(f"error: {message} (see --help)\n")
        sys.exit(2)


def add_setting_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, names: Iterable[str] = SETTING_NAMES,
                      *, defaults: Mapping[str, object] | None = None, help: Mapping[str, str] | None = None,
                      metavars: Mapping[str, str] | None = None, parse_defaults: bool = False) -> None:
    """A --flag for each setting named, with the setting's type and choices.

    help: this command's text for some settings (else HELP's); defaults: this command's default for some settings
    (else the dataclass's), shown in the help. With parse_defaults the parsed namespace holds the default of every
    flag not given; without, the parser's own argument_default applies (argparse.SUPPRESS: only the flags given)."""
    defaults, help, metavars = defaults or {}, help or {}, metavars or {}
    known = {f.name: f for f in fields(ExperimentSettings)}
    for name in names:
        f = known[name]
        default = defaults.get(name, f.default)
        text = help.get(name, HELP[name])
        text += "" if default is None or "(default:" in text else f" (default: {default})"  # a text may say its own
        extra = {"default": default} if parse_defaults else {}
        parser.add_argument("--" + name.replace("_", "-"), type=arg_type(f.type), choices=CHOICES.get(name),
                            metavar=metavars.get(name, METAVARS.get(name)), help=text, **extra)


def add_config_flag(parser: argparse.ArgumentParser,
                    text: str = "YAML file of settings (flags given on the command line win)") -> None:
    parser.add_argument("--config", help=text)


def add_progress_flag(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--progress, for every command that trains (lab.progress decides what it means)."""
    parser.add_argument("--progress", choices=PROGRESS_MODES, help=PROGRESS_HELP)


def add_comparison_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of a tool that trains several runs per backend and compares them."""
    parser.add_argument("--backends", default="lightning,keras",
                        help="comma-separated backends to run, lightning and/or keras (default: lightning,keras)")
    parser.add_argument("--rerun", action="store_true", default=False,
                        help="train every run again instead of reusing finished runs of the same settings "
                             "(interrupted ones are continued either way)")


def settings_parser(prog: str, description: str) -> LabArgumentParser:
    """The parser of a command that trains one run: every setting, --config, --resume and --progress."""
    parser = LabArgumentParser(prog=prog, description=description, argument_default=argparse.SUPPRESS)
    add_config_flag(parser)
    parser.add_argument("--resume", nargs="?", const="latest", metavar="RUN_DIR",
                        help="continue an interrupted run from its last checkpoint: the latest run of this "
                             "experiment, or the run folder given")
    add_setting_flags(parser)
    add_progress_flag(parser)
    return parser
