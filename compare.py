#!/usr/bin/env python
"""Compare finished runs: python compare.py RUN_DIR... | RUNS_ROOT [--out DIR] [--name NAME]."""
import sys

from lab.comparisons.commands import compare as main

if __name__ == "__main__":
    sys.exit(main())
