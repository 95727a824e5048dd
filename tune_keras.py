#!/usr/bin/env python
"""Search the hyperparameters of a CNN with keras-tuner; trials train with Keras, or with PyTorch Lightning
under --backend lightning (what tune_lightning.py does). See --help."""
import sys

from lab.tuning.tune_cli import keras as main

if __name__ == "__main__":
    sys.exit(main())
