# Every target sets itself up from nothing: its own virtual environment, pinned dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: all venv test lint typecheck unit demo bench schemas clean

all: test

$(STAMP): requirements.lock pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

unit: venv
	$(BIN)/pytest tests/unit

demo: venv
	$(BIN)/reconciler demo --out out/demo

bench: venv
	$(BIN)/python benchmarks/run.py

schemas: venv
	$(BIN)/reconciler events export events/

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
