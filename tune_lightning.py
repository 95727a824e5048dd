#!/usr/bin/env python
"""Search the hyperparameters of a CNN with keras-tuner's oracles, the trials trained with PyTorch Lightning.
The same search as tune_keras.py --backend lightning. See --help."""
import sys

from lab.tuning.tune_cli import lightning as main

if __name__ == "__main__":
    sys.exit(main())
