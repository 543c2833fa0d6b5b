# Experimentation workbench. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
PORT ?= 8866
PYTEST_ARGS ?=
SPARK_CONNECT_DIR ?= /tmp/workbench-spark-connect

export WORKBENCH_ROOT := $(CURDIR)
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: help setup demo test test-slow test-all lab serve mlflow-ui bench lint browser-deps clean spark-connect-start spark-connect-stop

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	@# --compile-bytecode: every process (CLI, kernels, dashboards) imports from .pyc files
	@# instead of compiling ~2,400 modules each time, even where PYTHONDONTWRITEBYTECODE is set
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python --no-deps -e .
	@$(BIN)/python -m compileall -q workbench
	@touch $(STAMP)

setup: $(STAMP) ## create .venv from the lock (idempotent; instant when done)

browser-deps: ## Debian chromium for the browser tests (apt-get, once)
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	@/usr/bin/chromium --version

demo: setup ## generate the sample data and run the whole pipeline on it
	$(BIN)/workbench sample-data
	$(BIN)/workbench validate
	@# --publish: the runs made here (and finished) are shown by `make serve`, no older ones
	$(BIN)/workbench run-jobs templates/demo_jobs.yml --publish
	@echo
	@echo "Reports:   $(CURDIR)/reports/"
	@echo "MLflow UI: make mlflow-ui   (http://127.0.0.1:5000)"
	@echo "Dashboards: make serve      (http://127.0.0.1:$(PORT))"

test: setup browser-deps ## run the test suite (quick; what CI runs)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: setup ## run the slow, thorough checks
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

lab: setup ## JupyterLab with the workbench kernel registered
	$(BIN)/python -m ipykernel install --user --name workbench --display-name "Python (workbench)"
	$(BIN)/jupyter lab --notebook-dir=$(CURDIR)

serve: setup ## serve the Voilà dashboards on localhost
	$(BIN)/workbench serve --port $(PORT)

mlflow-ui: setup ## open the MLflow UI on the local tracking database
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

bench: setup browser-deps ## run the benchmarks (figures go to benchmarks/README.md by hand)
	@set -e; for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f; done

spark-connect-start: setup ## a Spark Connect server on loopback (prints its sc:// URL)
	@.ci/spark_connect.sh start $(SPARK_CONNECT_DIR)

spark-connect-stop: ## stop the server of spark-connect-start
	@.ci/spark_connect.sh stop $(SPARK_CONNECT_DIR)

lint: setup ## ruff
	$(BIN)/ruff check workbench tests benchmarks

clean: ## remove the environment and generated outputs
	rm -rf $(VENV) data reports/*/ mlflow.db mlruns
