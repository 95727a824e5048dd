# The two set-up commands: `make demo` (main job on bundled data) and `make test`.
# Both create or reuse .venv and install the project into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision pins that match each other; override for another CUDA/CPU build, e.g.
#   make TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cpu" test
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow bench-speed bench-accuracy clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: install
	$(PY) train_lightning.py --dataset digits --epochs 5 --name demo
	$(PY) train_keras.py --dataset digits --epochs 5 --name demo
	$(PY) compare.py runs/demo

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

bench-speed: install
	$(PY) bench/speed.py

bench-accuracy: install
	$(PY) bench/accuracy.py

clean:
	rm -rf runs .pytest_cache
