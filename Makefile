# Every target bootstraps .venv with nothing but python3 on the machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= config/switchboard.default.toml

.PHONY: run test bench lint clean

$(STAMP): pyproject.toml tests/example_plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet -e tests/example_plugin
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/switchboard run --config $(CONFIG)

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/supervisor.py
	$(PY) bench/reload.py
	$(PY) bench/outbound.py
	$(PY) bench/inbound.py
	$(PY) bench/chunking.py

lint: $(STAMP)
	$(PY) -m compileall -q gateway providers

clean:
	rm -rf $(VENV) build *.egg-info
