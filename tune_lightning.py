#!/usr/bin/env python
"""Search the hyperparameters of a CNN with keras-tuner's oracles, the trials trained with PyTorch Lightning.
The same search as tune_keras.py --backend lightning. See --help."""
import sys

import tune_keras


def main(argv: list[str] | None = None) -> int:
    return tune_keras.main(argv, backend="lightning")


if __name__ == "__main__":
    sys.exit(main())
