# Every target sets itself up from nothing: its own virtual environment, pinned dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: all venv test lint typecheck unit demo bench schemas clean fuzz chaos load

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
	sh scripts/ensure-test-tools.sh
	$(BIN)/pytest

unit: venv
	$(BIN)/pytest tests/unit

demo: venv
	$(BIN)/reconciler demo --out out/demo

# Every figure beside its baseline, in 15-30 minutes; PostgreSQL and Kafka are started for
# the run unless RECONCILER_BENCH_PG_DSN / RECONCILER_BENCH_KAFKA name them.
# `make bench BENCH="store service"` runs only those (see benchmarks/README.md).
bench: venv
	$(BIN)/python benchmarks/run.py $(BENCH)

# Hostile input at the ingest boundary, seeded: a table per family; exits 1 on a crash.
fuzz: venv
	$(BIN)/python scripts/fuzz.py

# Faults on loopback (SIGKILLs, PostgreSQL restarts and cut sessions, broker outages, a
# jumping clock, duplicated and reordered input), then the invariants: 5 rounds, at most
# 20 minutes; `make chaos CHAOS="--rounds 10 --minutes 60"` for a longer campaign.
chaos: venv
	$(BIN)/python chaos/run.py $(CHAOS)

# Issue 8's load run: the service offered tens of thousands of records a second for a bounded
# time, then drained and replayed (about 6 minutes). Exits 1 unless throughput held, the lag
# stayed bounded, memory stayed flat and every decision replays.
# `make load LOAD="--rate 30000 --seconds 120"` changes the offer; PostgreSQL and Kafka as for bench.
load: venv
	$(BIN)/python benchmarks/load_run.py $(LOAD)

schemas: venv
	$(BIN)/reconciler events export events/

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
