#!/usr/bin/env python
"""Classify image files or folders with a finished run of either backend. See --help."""
import sys

from lab.predict.predict_cli import main

if __name__ == "__main__":
    sys.exit(main())
