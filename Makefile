# The two set-up commands: `make demo` (main job on bundled data) and `make test`.
# Both create or reuse .venv and install the project into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Versions (docs/dependencies.md): constraints.txt pins every package at the version the suite passed with,
# except the torch family (torch, torchvision, triton, nvidia-*, cuda-*), which TORCH_SPEC pins; `make lock`
# refreshes it. TORCH_SPEC is installed without the constraints, so another build of the same torch (CPU wheels,
# another CUDA, another index) needs only TORCH_SPEC:
#   make TORCH_SPEC="torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu" test
# Another torch version may need other versions of the packages it shares with the lock (sympy, ...), which pip
# then refuses to resolve: CONSTRAINTS= installs without the lock, from pyproject's ranges alone:
#   make CONSTRAINTS= TORCH_SPEC="torch torchvision" test
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
LOCK := constraints.txt
CONSTRAINTS ?= $(LOCK)
TORCH_FAMILY := ^(torch|torchvision|triton|nvidia-.*|cuda-.*)==
LOCK_VENV ?= .venv-lock
STAMP := $(VENV)/.installed

.PHONY: install lock demo test test-slow test-distributed bench-speed bench-accuracy clean

install: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e ".[dev]"
	touch $(STAMP)

# constraints.txt afresh: pyproject's ranges (and TORCH_SPEC) installed in a scratch venv, frozen less the torch
# family, under the file's own comment header. Then `make test`, which reinstalls .venv from the new lock.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q $(TORCH_SPEC)
	$(LOCK_VENV)/bin/python -m pip install -q -e ".[dev]"
	sed -n '/^#/!q;p' $(LOCK) > $(LOCK).new
	$(LOCK_VENV)/bin/python -m pip freeze --exclude-editable | grep -viE '$(TORCH_FAMILY)' >> $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(LOCK_VENV)

# The lab's section 1 (first CNN, MLP baseline, keras-tuner improvement) on both backends, one report.
demo: install
	$(PY) run_lab.py --preset quick --mnist-dataset digits --sections 1 --out runs/demo

# The default suite on TEST_WORKERS processes (pytest-xdist), each test file's tests together in one of them.
TEST_WORKERS ?= 2

test: install
	$(PY) -m pip check
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-slow: install
	$(PY) -m pytest -q -m slow

# The longer multi-process checks: torchrun, srun's variables, ddp_spawn, resume and transfer on 2 ranks.
test-distributed: install
	$(PY) -m pytest -q -m distributed

bench-speed: install
	$(PY) -m bench.speed

bench-accuracy: install
	$(PY) -m bench.accuracy

clean:
	rm -rf runs .pytest_cache
