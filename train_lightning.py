#!/usr/bin/env python
"""Train one lab experiment with PyTorch Lightning. See --help."""
import sys

from core import frameworks
from lab.run import runner


def main(argv: list[str] | None = None) -> int:
    frameworks.without_tensorflow()  # this process never runs Keras
    return runner.main("lightning", argv)


if __name__ == "__main__":
    sys.exit(main())
