#!/usr/bin/env python
"""Train one lab experiment with Keras 3. See --help."""
import sys

from lab.run.train_cli import keras as main

if __name__ == "__main__":
    sys.exit(main())
