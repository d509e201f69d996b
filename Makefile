# The two commands, from nothing (README: "The two commands"). Each first sets up what is missing:
# a virtualenv .venv with the CPU torch and golf installed editable with its dev extras (redone
# only when pyproject.toml changes), then runs. Both are idempotent: a second run only runs.
#
#   make repro     # the whole pipeline on the default params (dvc repro)
#   make test      # the tests (pytest; no test collected counts as a failure)

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
STAMP := $(VENV)/.installed

# golf's stages run as `golf ...` under dvc: the venv's scripts come first on PATH
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export VIRTUAL_ENV := $(CURDIR)/$(VENV)
export DVC_NO_ANALYTICS := 1

.PHONY: repro test setup
repro: $(STAMP)
	dvc repro

test: $(STAMP)
	python -m pytest -q $(PYTEST_ARGS) || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc; }

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check $(TORCH)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@
