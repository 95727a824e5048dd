#!/usr/bin/env python
"""Train a model pretrained-then-fine-tuned and the same model from scratch on each backend, then compare.
See --help.

    python transfer_compare.py --model mobilenet --weights imagenet --image-size 96 --epochs 3 \\
        --finetune-epochs 3 --unfreeze 0.25 --dataset folder --data-dir ../shared/data/cifar10-jpg.tar.gz

    python transfer_compare.py --model cifar_cnn --width 16 --depth 2 --weights runs/cifar-first5 \\
        --classes 5,6,7,8,9 --epochs 2 --finetune-epochs 3 --dataset folder --data-dir ...
"""
import sys

from lab.comparisons.commands import transfer_compare as main

if __name__ == "__main__":
    sys.exit(main())
