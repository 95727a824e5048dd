"""`pip install .` (not editable) gives working entry points: the packages are in the wheel, and its console
scripts (which point into the packages, not at the checkout's root scripts) run from any folder."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["lab-train-lightning", "lab-train-keras", "lab-tune-keras", "lab-tune-lightning", "lab-compare",
            "lab-augment-compare", "lab-transfer-compare", "lab-run", "lab-predict"]


@pytest.mark.slow  # builds and installs a wheel: about a minute
def test_a_plain_install_gives_working_commands(tmp_path):
    def run(*args, **kw):
        done = subprocess.run([*map(str, args)], capture_output=True, text=True, timeout=300, **kw)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "wheel",
        ROOT)
    site = tmp_path / "site"
    run(sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site,
        *(tmp_path / "wheel").glob("*.whl"))
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed copy, ahead of this checkout's editable one
    where = run(sys.executable, "-c", "import lab, lightning_modules; print(lab.__file__)",
                cwd=tmp_path, env=env)
    assert Path(where.strip()).is_relative_to(site)
    for command in COMMANDS:
        assert "usage:" in run(site / "bin" / command, "--help", cwd=tmp_path, env=env), command
    out = run(site / "bin" / "lab-train-lightning", "--dataset", "digits", "--model", "mlp", "--hidden", "8",
              "--epochs", "1", "--out", tmp_path / "runs", cwd=tmp_path, env=env)
    assert "test accuracy" in out
    assert (tmp_path / "runs" / "mlp-digits" / "lightning" / "version_0" / "results.json").is_file()
