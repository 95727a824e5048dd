"""What training prints per epoch (lab.progress): one plain line per epoch into a log file or a pipe, a bar on a
terminal, nothing with --progress none; the same line on both backends."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import call_main
from core.errors import LabError
from lab import progress as P
from lab.comparisons import commands
from lab.pipeline import whole_lab
from lab.run import train_cli
from lab.tuning import tune_cli

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--dataset", "digits", "--model", "mlp", "--hidden", "16", "--train-images", "64", "--epochs", "2"]
EPOCH_LINE = re.compile(rb"^epoch (\d+)/2: train/loss \d+\.\d{4} train/acc \d+\.\d\d% val/loss \d+\.\d{4} "
                        rb"val/acc \d+\.\d\d% \d+\.\ds$")


class _Stdout:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self):
        return self.tty


def test_auto_is_a_bar_on_a_terminal_and_one_line_per_epoch_elsewhere(monkeypatch):
    monkeypatch.delenv(P.ENV, raising=False)
    monkeypatch.setattr(sys, "stdout", _Stdout(tty=True))
    assert P.progress_mode() == "bar"
    monkeypatch.setattr(sys, "stdout", _Stdout(tty=False))
    assert P.progress_mode() == "epoch"
    with P.progress("none"):  # a flag wins, for the command and what it starts, and only while it runs
        assert P.progress_mode() == "none"
    assert P.ENV not in os.environ
    monkeypatch.setenv(P.ENV, "bars")
    with pytest.raises(LabError, match="progress must be one of auto, bar, epoch, none"):
        P.progress_mode()


def test_the_epoch_line():
    row = {"epoch": 3, "train/loss": 0.12344, "train/acc": 0.95123, "val/loss": 0.2, "val/acc": 0.934,
           "time/epoch_s": 12.34}
    assert P.epoch_line(row, 10) == ("epoch 3/10: train/loss 0.1234 train/acc 95.12% val/loss 0.2000 "
                                     "val/acc 93.40% 12.3s")


@pytest.mark.multiprocess
def test_a_pipe_gets_one_plain_line_per_epoch_on_both_backends(tmp_path):
    """The entry scripts with their output to a pipe, as in `> train.log`, a SLURM job or CI."""
    processes = {backend: subprocess.Popen([sys.executable, str(ROOT / f"train_{backend}.py"), *ARGS,
                                            "--out", str(tmp_path)], cwd=tmp_path, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT)
                 for backend in ("lightning", "keras")}
    for backend, process in processes.items():
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:].decode(errors="replace")
        assert b"\r" not in output, backend
        epochs = [int(m.group(1)) for m in map(EPOCH_LINE.match, output.splitlines()) if m]
        assert epochs == [1, 2], output[-3000:].decode(errors="replace")


@pytest.mark.parametrize("backend", ["lightning", "keras"])
def test_progress_none_prints_no_epoch(backend, tmp_path, capsys):
    code, out, err = call_main(lambda argv: train_cli.main(backend, argv),
                               [*ARGS, "--out", str(tmp_path), "--progress", "none"], capsys)
    assert code == 0, err
    assert "test accuracy" in out and "epoch 1/2" not in out and "\r" not in out + err


def test_every_command_that_trains_takes_the_flags():
    parsers = {"run_lab.py": whole_lab.build_parser(), "tune_keras.py": tune_cli.build_parser("tune", "keras"),
               "augment_compare.py": commands.augment_parser(), "transfer_compare.py": commands.transfer_parser()}
    for name, parser in parsers.items():
        args = parser.parse_args(["--progress", "none", "--test-weights", "best"])
        assert (args.progress, args.test_weights) == ("none", "best"), name
