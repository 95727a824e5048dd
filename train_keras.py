#!/usr/bin/env python
"""Train one lab experiment with Keras 3. See --help."""
import sys

from lab.run import runner


def main(argv: list[str] | None = None) -> int:
    return runner.main("keras", argv)


if __name__ == "__main__":
    sys.exit(main())
