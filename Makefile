# The two set-up commands: `make demo` (main job on bundled data) and `make test`.
# Both create or reuse .venv and install the project into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision pins that match each other; override for another CUDA/CPU build, e.g.
#   make TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cpu" test
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow test-distributed bench-speed bench-accuracy clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

# The lab's section 1 (first CNN, MLP baseline, keras-tuner improvement) on both backends, one report.
demo: install
	$(PY) run_lab.py --preset quick --mnist-dataset digits --sections 1 --out runs/demo

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -q

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
