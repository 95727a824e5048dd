#!/usr/bin/env python
"""Train one lab experiment with PyTorch Lightning. See --help."""
import sys
import types

# torch's TensorBoard writer imports all of TensorFlow when it is installed, only to join paths;
# tensorboard's 'notf' marker makes it use its own small stub instead. Only in this script: a
# process that also runs Keras needs the real TensorFlow behind tensorboard.
sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))

from lab.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("lightning"))
