#!/usr/bin/env python
"""Run the whole lab on both backends and write one complete report. See --help."""
import sys

from lab.pipeline.whole_lab import main

if __name__ == "__main__":
    sys.exit(main())
