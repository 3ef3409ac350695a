# attnlab: `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Where `make ui` / `make dashboard` look (the defaults `attnlab train` writes from this folder).
MLFLOW_URI ?= sqlite:///$(CURDIR)/mlflow.db
OPTUNA_STORAGE ?= sqlite:///$(CURDIR)/optuna.db
PORT ?= 5000

.PHONY: install run test test-slow bench bench-quick ui dashboard clean-venv help

help:
	@echo "make run        create .venv, install, train the default experiment (synthetic data)"
	@echo "make test       create .venv if needed, install, run the tests (not the slow ones)"
	@echo "make test-slow  the slow tests too (long sweeps, 4-worker load test)"
	@echo "make bench      all benchmarks (ratios measured side by side), logged to MLflow"
	@echo "make ui         MLflow UI on http://127.0.0.1:$(PORT) for ./mlflow.db"
	@echo "make dashboard  Optuna dashboard for ./optuna.db"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev,dashboard]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/attnlab train

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m "slow or not slow"

bench: install
	$(VENV)/bin/attnlab bench all

bench-quick: install
	$(VENV)/bin/attnlab bench all --quick

ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri $(MLFLOW_URI) --host 127.0.0.1 --port $(PORT)

dashboard: install
	$(VENV)/bin/optuna-dashboard $(OPTUNA_STORAGE) --host 127.0.0.1 --port 8080

clean-venv:
	rm -rf $(VENV)
