"""torch and TensorFlow in one process, in the order a process happens to need them: core.frameworks makes
TensorFlow loaded first harmless to torch. Each case is a fresh interpreter: the order of first imports is
the point."""
import subprocess
import sys

import pytest

TENSORFLOW_FIRST = """
from core.frameworks import kt, tf  # keras-tuner and TensorFlow first, as a search on Lightning loads them
import torch
torch.optim.Adam([torch.zeros(1, requires_grad=True)]).step()  # loads triton where it is installed
print("gpus", torch.cuda.device_count())
"""


@pytest.mark.multiprocess
def test_tensorflow_loaded_first_leaves_torch_whole():
    done = subprocess.run([sys.executable, "-c", TENSORFLOW_FIRST], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]  # a segfault is -11
    assert "gpus" in done.stdout
    assert "CUDA initialization" not in done.stderr, done.stderr[-2000:]
