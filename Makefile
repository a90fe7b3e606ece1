# `make train` and `make test` work as the first command on a fresh machine: they create .venv
# and install the project into it when pyproject.toml is newer than the last install.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

# Data: $XENT_DATA_DIR when set; else a sibling shared/data folder (the team's offline copy) when
# there is one; else the loaders use ~/.cache/xent_lab/data and download what is missing.
ifeq ($(origin XENT_DATA_DIR), undefined)
ifneq ($(wildcard ../shared/data/SHA256SUMS),)
export XENT_DATA_DIR := $(abspath ../shared/data)
endif
endif

.PHONY: install train lint format test test-fast test-ui bench study ui server screenshots cluster cluster-stop clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)  ## the main job: MNIST MLP with categorical cross-entropy, logged to ./mlflow.db
	$(PY) -m xent_lab.train $(ARGS)

lint: $(STAMP)  ## ruff: lint and format check (configured in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## ruff: fix what can be fixed, and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# One pytest-xdist worker per CPU (TensorFlow on one thread in each: tests/conftest.py); the tests that share
# a tracking server or the SLURM cluster carry one `xdist_group` each, so one worker runs them (--dist loadgroup).
WORKERS ?= logical
XDIST := -n $(WORKERS) --dist loadgroup
# Bytecode written even where the shell sets PYTHONDONTWRITEBYTECODE: the suite starts a hundred-odd Python
# processes, and each would compile the project's modules again (about a second of CPU each).
PYTEST := PYTHONDONTWRITEBYTECODE= $(PY) -m pytest
# The inner loop: no process, server, cluster or browser started, no training past debug=quick.
FAST := not subprocess and not server and not slurm and not ui and not train and not slow

test: lint  ## lint, then the whole test suite (unit + real trainings on real data), on every CPU
	$(PYTEST) $(XDIST) $(ARGS)

test-fast: $(STAMP)  ## the inner loop (about 1 minute): no subprocess, server, SLURM, browser or long training
	$(PYTEST) $(XDIST) -m "$(FAST)" $(ARGS)

test-ui: $(STAMP)  ## the browser test only: headless Chromium over a real MLflow UI (needs .ci/system-packages)
	$(PYTEST) -m ui $(ARGS)

bench: $(STAMP)  ## benchmark figures -> bench-results.json
	$(PY) -m xent_lab.bench $(ARGS)

study: $(STAMP)  ## run a whole study and write its report: make study STUDY=mnist_losses
	@test -n "$(STUDY)" || { echo "usage: make study STUDY=<name of a file in experiments/>"; exit 2; }
	$(PY) -m xent_lab.train experiment=$(STUDY) $(ARGS)

# MLflow has no authentication by default: keep HOST=127.0.0.1 unless the network is trusted.
# Job execution off: MLflow's GenAI job runner starts seven worker processes that tracking never uses.
HOST ?= 127.0.0.1
PORT ?= 5000
BACKEND ?= sqlite:///mlflow.db

ui: $(STAMP)  ## MLflow UI over ./mlflow.db on http://127.0.0.1:5000
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui --backend-store-uri $(BACKEND) --host $(HOST) --port $(PORT)

server: $(STAMP)  ## MLflow tracking server (BACKEND=postgresql://... for PostgreSQL), serving artifacts
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow server --backend-store-uri $(BACKEND) --serve-artifacts --artifacts-destination ./mlartifacts --host $(HOST) --port $(PORT)

screenshots: $(STAMP)  ## the README's UI screenshots: make screenshots STORE=sqlite:///PATH/mlflow.db (needs .ci/system-packages)
	@test -n "$(STORE)" || { echo "usage: make screenshots STORE=sqlite:///PATH/mlflow.db"; exit 2; }
	$(PY) -m tools.screenshots --store $(STORE) --out docs/screenshots $(ARGS)

# A single-node SLURM cluster (munged, slurmctld, slurmd, as root) for trying hydra/launcher=slurm; not for production.
CLUSTER_DIR ?= /tmp/xent-lab-cluster

cluster: $(STAMP)  ## start a local single-node SLURM cluster (root); prints the SLURM_CONF to export
	bash .ci/system-packages slurm-wlm munge
	$(PY) -m tools.cluster start $(CLUSTER_DIR)

cluster-stop: $(STAMP)  ## stop the local SLURM cluster and whatever its jobs left running
	$(PY) -m tools.cluster stop $(CLUSTER_DIR)

clean:
	rm -rf outputs multirun .pytest_cache
