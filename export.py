#!/usr/bin/env python
"""Export a finished run's checkpoint as ONNX, pt2, SavedModel or LiteRT, checked against the network. See --help."""
import sys

from lab.export.export_cli import main

if __name__ == "__main__":
    sys.exit(main())
