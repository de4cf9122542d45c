# The same commands in the README, in CI and on a laptop.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit check services bench bench-ingest bench-aggregate bench-api bench-abuse \
	bench-alerts clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (set PYTHON=...)")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: the whole system on embedded defaults, API on http://127.0.0.1:8000 (Ctrl-C stops it)
demo: $(STAMP)
	$(BIN)/pilots demo

## services: install Debian's mosquitto and influxdb when missing (as root), for the tests
services:
	./scripts/test-services.sh

## test: the whole suite, integration and end-to-end tests against real mosquitto and influxd
test: $(STAMP) services
	$(BIN)/pytest

## test-unit: the pure tests only (no services)
test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

## check: lint and type-check
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pre-commit validate-config .pre-commit-config.yaml

## bench: every benchmark (results go into docs/BENCHMARKS.md by hand, with the command)
bench: bench-ingest bench-aggregate bench-api bench-abuse bench-alerts

## bench-aggregate: the numpy core against pandas, polars, DuckDB and InfluxDB
bench-aggregate: $(STAMP) services
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.aggregate

## bench-api: the API's warm answers against answering each request from InfluxDB (needs wrk)
bench-api: $(STAMP) services
	command -v wrk >/dev/null || apt-get install -y -q wrk
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.api

## bench-abuse: a flooding device against good ones; the costliest requests a read token can make
bench-abuse: $(STAMP) services
	$(BIN)/python -m bench.abuse

## bench-alerts: publish-to-webhook latency of the alert service against a bare bridge; its CPU
bench-alerts: $(STAMP) services
	$(BIN)/python -m bench.alerts

## bench-ingest: ingest against its ceilings and the naive bridge; then the outage memory run
bench-ingest: $(STAMP) services
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.ingest --outage

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
