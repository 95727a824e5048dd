"""The lock: constraints.txt pins every dependency within pyproject's ranges, the Makefile's TORCH_SPEC pins the
torch family that the lock leaves out, and `make install` passes the lock to pip (read from `make -n`)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _direct() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [Requirement(r) for reqs in project["optional-dependencies"].values() for r in reqs]
    own = canonicalize_name(project["name"])  # dev includes the export extra as dual-lab[export]
    return [Requirement(r) for r in project["dependencies"]] + [r for r in extras if canonicalize_name(r.name) != own]


def _make(*args) -> list[str]:
    done = subprocess.run(["make", "-n", "-B", "VENV=/nonexistent/venv", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _torch_spec() -> dict[str, str]:
    line = next(row for row in _make("install") if re.search(r"pip install -q torch\b", row))
    return _pins(token for token in line.split() if "==" in token)


def _torch_family() -> re.Pattern:
    """The pattern `make lock` leaves out of the lock, as the Makefile spells it."""
    line = next(row for row in _make("lock", "LOCK_VENV=/nonexistent/lock") if "grep -viE" in row)
    return re.compile(re.search(r"grep -viE '([^']+)'", line).group(1), re.IGNORECASE)


@needs_make
def test_every_direct_dependency_is_pinned_within_its_range():
    pinned = {**_pins(LOCK.read_text().splitlines()), **_torch_spec()}
    problems = []
    for requirement in _direct():
        version = pinned.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement.name} is pinned neither in constraints.txt nor in TORCH_SPEC")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}=={version} is outside pyproject's {requirement}")
    assert not problems, "\n".join(problems)


@needs_make
def test_the_lock_leaves_the_torch_family_to_torch_spec():
    family = _torch_family()
    assert not [row for row in LOCK.read_text().splitlines() if family.match(row)]
    assert {"torch", "torchvision"} <= set(_torch_spec())
    for name in ("torch", "torchvision", "triton", "nvidia-cublas", "cuda-bindings"):
        assert family.match(f"{name}==1.0"), name
    for name in ("torchmetrics", "pytorch-lightning", "tensorflow"):
        assert not family.match(f"{name}==1.0"), name


@needs_make
def test_install_passes_the_lock_to_pip_and_test_checks_the_environment():
    def installs(*args):
        return [row for row in _make(*args) if " -m pip install" in row and "--upgrade pip" not in row]

    torch, project = installs("install")
    assert "-c constraints.txt" in project and "-e" in project and "-c " not in torch
    cpu = "torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu"
    torch, project = installs("install", f"TORCH_SPEC={cpu}")
    assert torch.endswith(cpu) and "-c constraints.txt" in project  # another build: the same lock
    torch, project = installs("install", "CONSTRAINTS=")
    assert "-c " not in project  # another torch version: pyproject's ranges alone
    steps = [row.split(" -m ")[1].split()[0] for row in _make("test") if " -m " in row]
    assert steps[-3:] == ["pip", "ruff", "pytest"]
