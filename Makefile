# ferrocluster: `make demo` runs the main job, `make test` the whole test suite.
# Both install what they need: a Python virtual environment in .venv and a release build.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CARGO ?= cargo
CLI := $(CARGO) run --quiet --release -p ferrocluster-core --bin ferrocluster --
DEMO_DIR ?= samples/digits
DEMO_OUT ?= out/digits

.PHONY: demo test test-rust test-python install venv python-package system-deps lint bench-core clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "maturin>=1.16,<2" "numpy>=1.24" "scikit-learn>=1.5" "scikit-image>=0.24" "pillow>=10" \
		"pytest>=8" threadpoolctl
	touch $@

venv: $(VENV)/.installed

## The native module, built in release mode into the virtual environment.
python-package: venv system-deps
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release --quiet

install: python-package

## The main job: scikit-learn's digits, clustered end to end on this machine, no Redis.
demo: venv system-deps
	$(CARGO) build --quiet --release -p ferrocluster-core --bin ferrocluster
	$(CLI) sample digits $(DEMO_DIR) --python $(PY)
	$(CLI) cluster $(DEMO_DIR) --k 10 --size 32 -o $(DEMO_OUT)
	@echo "contact sheet (one row per cluster): $(DEMO_OUT)/contact_sheet.png"

## System packages the tests start for real (redis-server).
system-deps:
	scripts/install-system-deps.sh

test-rust: system-deps
	$(CARGO) test --release --workspace --exclude ferrocluster-python

test-python: python-package
	$(PY) -m pytest -q

## The whole suite.
test: test-rust test-python

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench-core: python-package
	$(PY) bench/bench_core.py

clean:
	rm -rf $(VENV) out samples
