# attnlab: `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# GPU=1: TensorFlow with CUDA (pip's nvidia-* libraries) instead of tensorflow-cpu, same version.
# The choice sticks: a venv installed with GPU=1 stays GPU until `make install GPU=0`.
GPU    ?= $(if $(wildcard $(VENV)/.installed-gpu),1,0)
TF_EXTRA := $(if $(filter-out 0,$(GPU)),gpu,cpu)
TF_OTHER := $(if $(filter-out 0,$(GPU)),tensorflow-cpu,tensorflow)
STAMP  := $(VENV)/.installed-$(TF_EXTRA)
# Where `make ui` / `make dashboard` look (the defaults `attnlab train` writes from this folder).
MLFLOW_URI ?= sqlite:///$(CURDIR)/mlflow.db
OPTUNA_STORAGE ?= sqlite:///$(CURDIR)/optuna.db
PORT ?= 5000

.PHONY: install run test test-slow test-long test-slurm bench bench-quick ui dashboard docs clean-venv help

help:
	@echo "make run        create .venv, install, train the default experiment (synthetic data)"
	@echo "make test       create .venv if needed, install, run the tests (not the slow ones)"
	@echo "make test-slow  the slow tests too (long sweeps, 4-worker load test)"
	@echo "make test-long  only the slow tests (CI runs it after make test)"
	@echo "make test-slurm the cluster tests: submitit grids on Slurm and locally (scripts/slurm.sh start first)"
	@echo "GPU=1           with install/run/test: TensorFlow with CUDA instead of tensorflow-cpu"
	@echo "make bench      all benchmarks (ratios measured side by side), logged to MLflow"
	@echo "make ui         MLflow UI for ./mlflow.db; prints the runs table's URL (http://127.0.0.1:$(PORT)/#/experiments/...)"
	@echo "make dashboard  Optuna dashboard for ./optuna.db"
	@echo "make docs       regenerate README.md's config reference from conf/"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@rm -f $(VENV)/.installed-*
	@# Both TensorFlow wheels write the same package: switching removes the other one first.
	@$(PY) -m pip uninstall -y -q $(TF_OTHER) >/dev/null 2>&1 || true
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev,dashboard,$(TF_EXTRA)]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/attnlab train

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m "slow or not slow"

# Only the slow tests (CI runs them after `make test`; together they are `make test-slow`).
test-long: install
	$(PY) -m pytest -q -m "slow and not slurm and not cluster"

# Needs the cluster from scripts/slurm.sh (SLURM_CONF defaults to its config); pytest's
# exit 5 (nothing collected, e.g. under a -k filter) is not a failure here.
test-slurm: install
	@test -n "$$SLURM_CONF" || eval "$$(scripts/slurm.sh env)"; \
	$(PY) -m pytest -q -m "slurm or cluster"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "test-slurm: no tests collected"; rc=0; fi; exit $$rc

bench: install
	$(VENV)/bin/attnlab bench all --force  # regenerates the tables committed under experiments/benchmarks

bench-quick: install
	$(VENV)/bin/attnlab bench all --quick --force

# Prints the runs table's URL first (MLflow 3.17 opens on a GenAI overview otherwise).
ui: install
	@$(PY) -m attnlab.ui --tracking-uri $(MLFLOW_URI) --port $(PORT)
	$(VENV)/bin/mlflow ui --backend-store-uri $(MLFLOW_URI) --host 127.0.0.1 --port $(PORT) --workers 1

dashboard: install
	$(VENV)/bin/optuna-dashboard $(OPTUNA_STORAGE) --host 127.0.0.1 --port 8080

docs: install
	$(PY) -m attnlab.reference

clean-venv:
	rm -rf $(VENV)
