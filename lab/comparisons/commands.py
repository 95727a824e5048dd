"""The command lines of compare.py, augment_compare.py and transfer_compare.py."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.cli import run_command
from lab.comparisons import with_augmentation, with_transfer
from lab.config.flags import (
    LabArgumentParser,
    add_comparison_flags,
    add_config_flag,
    add_progress_flag,
    add_setting_flags,
)
from lab.config.settings import check_out
from lab.reports.comparison import compare_runs, default_out_dir

INTERRUPTED = "finished runs and epochs are kept; run the same command again to continue and compare."


def compare_parser() -> LabArgumentParser:
    parser = LabArgumentParser(prog="compare.py", description="Write the comparison table (comparison.md, "
                               "comparison.csv) and the validation curves of several runs.")
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a run folder (holding results.json) or a folder searched recursively for runs")
    parser.add_argument("--out", type=Path, help="folder to write into (default: the folder of runs when a single "
                                                 "one is given, else runs/comparisons/NAME)")
    parser.add_argument("--name", help="name of the comparison folder under runs/comparisons (default: a timestamp)")
    parser.add_argument("--allow-mixed-datasets", action="store_true",
                        help="compare runs of different datasets, grouped by dataset, instead of refusing")
    return parser


def compare(argv: list[str] | None = None) -> int:
    """compare.py: the comparison of finished runs."""
    args = compare_parser().parse_args(argv)
    out = args.out or default_out_dir(args.paths, args.name)
    code, written = run_command(lambda: _compare(args, out), "nothing written.")
    if written is None:
        return code
    print(f"Compared {len(written['runs'])} runs:")
    for key in ("markdown", "csv", "curves"):
        print(f"  {written[key]}")
    return 0


def _compare(args: argparse.Namespace, out: Path) -> dict:
    check_out(out)
    return compare_runs(args.paths, out, allow_mixed_datasets=args.allow_mixed_datasets)


def augment_parser() -> LabArgumentParser:
    parser = LabArgumentParser(prog="augment_compare.py", argument_default=argparse.SUPPRESS,
                               description="Train one model without and with augmentation on each backend, then "
                                           "compare the runs.")
    add_config_flag(parser, "YAML file of further training settings, e.g. 'width: 16' (flags given on the command "
                            "line win)")
    add_setting_flags(parser, with_augmentation.PASSED, defaults=with_augmentation.TOOL_DEFAULTS)
    add_progress_flag(parser)
    add_comparison_flags(parser)
    add_setting_flags(parser, ("out", "name"), defaults={"out": with_augmentation.OUT}, help={
        "out": "root folder of the runs and the comparison",
        "name": "experiment name (default: <model>-<dataset>); the runs add -noaug and -aug"})
    return parser


def augment_compare(argv: list[str] | None = None) -> int:
    """augment_compare.py: train without and with augmentation, then compare."""
    args = augment_parser().parse_args(argv)
    code, result = run_command(lambda: with_augmentation.run_pair(args), INTERRUPTED)
    if code:
        return code
    run_dirs, written = result
    print("\n" + with_augmentation.summary(run_dirs))
    print(f"\ncomparison: {written['markdown']}\ncurves:     {written['curves']}")
    return 0


def transfer_parser() -> LabArgumentParser:
    parser = LabArgumentParser(prog="transfer_compare.py", argument_default=argparse.SUPPRESS,
                               description="Train a model pretrained-then-fine-tuned and the same model from "
                                           "scratch on each backend, then compare.")
    add_config_flag(parser)
    add_setting_flags(parser)
    add_progress_flag(parser)
    add_comparison_flags(parser)
    return parser


def transfer_compare(argv: list[str] | None = None) -> int:
    """transfer_compare.py: train pretrained and from scratch, then compare."""
    args = transfer_parser().parse_args(argv)
    code, result = run_command(lambda: with_transfer.run_pair(args), INTERRUPTED)
    if result:
        run_dirs, written = result
        print("\n" + with_transfer.summary(run_dirs))
        print(f"\ncomparison: {written['markdown']}\ncurves:     {written['curves']}")
    return code
