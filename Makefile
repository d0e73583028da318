# Set-up and entry points. Every target installs what it needs first (idempotent).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL := 3
export XLA_FLAGS ?= --xla_cpu_multi_thread_eigen=true

.PHONY: install test test-slow lint clean

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,ref]'
	@touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m pytest -q -x --durations=10

test-slow: install
	$(PY) -m pytest -q -m slow --durations=10

lint: install
	$(PY) -m pip install --quiet ruff
	$(VENV)/bin/ruff check harness tests scripts

clean:
	rm -rf $(VENV) .pytest_cache
