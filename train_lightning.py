#!/usr/bin/env python
"""Train one lab experiment with PyTorch Lightning. See --help."""
import sys

from lab.run.train_cli import lightning as main

if __name__ == "__main__":
    sys.exit(main())
