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

.PHONY: demo test test-rust test-python worker-binary api-binary install venv python-package system-deps lint bench-core bench-queue bench-distributed bench-api clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "maturin>=1.16,<2" "numpy>=1.24" "scikit-learn>=1.5" "scikit-image>=0.24" "pillow>=10" \
		"pytest>=8" threadpoolctl "schemathesis>=4.3,<5" "trustme>=1.2"
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

## The worker binary the cluster-mode Python tests and benches start.
worker-binary:
	$(CARGO) build --quiet --release -p ferrocluster-core --bin ferrocluster-worker

## The REST service the contract and TLS tests start (default features: TLS included).
api-binary:
	$(CARGO) build --quiet --release -p ferrocluster-api --bin ferrocluster-api

test-python: python-package worker-binary api-binary
	$(PY) -m pytest -q

## The whole suite.
test: test-rust test-python

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Features and k-means against scikit-image, scikit-learn and linfa (built from bench/linfa_kmeans,
## outside the workspace) as ratios measured in one run; BENCH_ARGS="--quick --clock cpu" on a busy machine.
bench-core: python-package
	$(PY) bench/bench_core.py $(BENCH_ARGS)

## Ray, for bench-queue only, in its own environment (it pins its own dependencies).
RAY_VENV ?= .venv-ray
$(RAY_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RAY_VENV)/bin/python -m pip install --quiet "ray[serve]==2.60.0" "scikit-learn>=1.5" "scikit-image>=0.24" \
		"pillow>=10"
	touch $@

## No-op task throughput (Ray's microbenchmark definitions): embedded, cluster (real Redis and
## workers) and Ray 2.60, as medians and ratios measured in one run.
bench-queue: python-package worker-binary $(RAY_VENV)/.installed
	$(PY) bench/bench_queue.py --ray-python $(RAY_VENV)/bin/python

## Distributed feature extraction and k-means: 1..N local single-threaded workers against 1..N
## threads in one process, medians (wall and CPU) and ratios measured in one run.
## WORKERS=1,2,4,8,14 on a 16-core machine; BENCH_ARGS=--quick for a quick check.
WORKERS ?= 1,2
bench-distributed: python-package system-deps
	$(CARGO) build --quiet --release -p ferrocluster-core --bin ferrocluster --bin ferrocluster-worker
	$(PY) bench/bench_distributed.py --workers $(WORKERS) $(BENCH_ARGS)

## Predict on one 64×64 image over loopback: ferrocluster-api (batching on and off) against
## Ray Serve + FastAPI + scikit-image/scikit-learn; wrk for throughput, a fixed-rate client for latency.
bench-api: venv api-binary $(RAY_VENV)/.installed
	command -v wrk >/dev/null || scripts/install-system-deps.sh wrk
	$(PY) bench/bench_api.py --ray-python $(RAY_VENV)/bin/python

clean:
	rm -rf $(VENV) $(RAY_VENV) out samples
