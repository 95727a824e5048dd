"""Compare finished runs: python compare.py RUN_DIR... | RUNS_ROOT [--out DIR] [--name NAME]."""
from __future__ import annotations

import sys
from pathlib import Path

from core.cli import run_command
from lab.config.settings import LabArgumentParser, check_out
from lab.reports.comparison import compare_runs, default_out_dir


def build_parser() -> LabArgumentParser:
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or default_out_dir(args.paths, args.name)
    code, written = run_command(lambda: _compare(args, out), "nothing written.")
    if written is None:
        return code
    print(f"Compared {len(written['runs'])} runs:")
    for key in ("markdown", "csv", "curves"):
        print(f"  {written[key]}")
    return 0


def _compare(args, out: Path) -> dict:
    check_out(out)
    return compare_runs(args.paths, out, allow_mixed_datasets=args.allow_mixed_datasets)


if __name__ == "__main__":
    sys.exit(main())
