# Every target installs what it needs: a fresh machine needs only Python 3.11+ and make.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# The optional Airflow stack lives in a venv of its own, installed from the lock file.
AIRFLOW_VENV := .venv-airflow
AIRFLOW_PY := $(AIRFLOW_VENV)/bin/python
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed

.PHONY: setup demo test lint lab monitor preview recover verify review bench promtool chromium clean-db airflow-setup airflow-test

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11+ or run 'make PYTHON=python3 ...'"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (health-export-recovery)" >/dev/null
	touch $(STAMP)

# Apache Airflow 3 and this project (editable), pinned by constraints-airflow.txt; .venv is not touched.
airflow-setup: $(AIRFLOW_STAMP)

$(AIRFLOW_STAMP): pyproject.toml constraints-airflow.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11+ or run 'make PYTHON=python3 ...'"; exit 1; }
	test -x $(AIRFLOW_PY) || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_PY) -m pip install --quiet -c constraints-airflow.txt -e '.[airflow]'
	$(AIRFLOW_PY) -m pip check
	$(AIRFLOW_PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (health-export-recovery, airflow)" >/dev/null
	touch $(AIRFLOW_STAMP)

# The DAG end to end with 3 workers on a generated incident (throwaway PostgreSQL servers, api-server).
airflow-test: $(AIRFLOW_STAMP)
	$(AIRFLOW_PY) tests/airflow_e2e.py $(ARGS)

# promtool validates the alert rules and the textfile the monitor writes (Debian package 'prometheus').
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing promtool (Debian package prometheus)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# Headless Chromium opens the archived HTML and JupyterLab in tests/test_archive_browser.py (Debian package 'chromium').
CHROMIUM := /usr/lib/chromium/chromium
chromium:
	@test -x $(CHROMIUM) || { \
	  echo "installing chromium (Debian package chromium)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

demo: setup
	$(PY) -m recovery_lib demo

test: setup promtool chromium
	$(PY) -m pytest $(ARGS)

lint: setup
	$(VENV)/bin/ruff check recovery_lib tests benchmarks dags

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

monitor preview recover verify review: setup
	$(PY) -m recovery_lib run $@ $(ARGS)

bench: setup
	$(PY) -m benchmarks $(ARGS)

clean-db:
	$(PY) -m recovery_lib db stop || true
	rm -rf .pgdata
