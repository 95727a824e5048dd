#!/usr/bin/env python
"""Train one model without and with augmentation on each backend, then compare the runs. See --help.

    python augment_compare.py --dataset folder --data-dir ../shared/data/cifar10-jpg.tar.gz --epochs 15
"""
import sys

from lab.comparisons.commands import augment_compare as main

if __name__ == "__main__":
    sys.exit(main())
