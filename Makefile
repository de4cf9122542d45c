# The same commands in the README, in CI and on a laptop.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit check services bench bench-deps bench-ingest bench-aggregate bench-api bench-sta \
	bench-abuse bench-alerts bench-scaleout bench-scale clean

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

## test: the whole suite, integration and end-to-end tests against real mosquitto and influxd;
## test files run on TEST_WORKERS processes at once (pytest-xdist), each with its own services
TEST_WORKERS ?= 2
test: $(STAMP) services
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

## test-unit: the pure tests only (no services)
test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

## check: lint and type-check
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pre-commit validate-config .pre-commit-config.yaml

## bench: every benchmark and scale curve, one after another (well over an hour on 2 cores);
## figures go into docs/BENCHMARKS.md by hand with their command, curves into docs/scaling/
bench: bench-ingest bench-scaleout bench-aggregate bench-api bench-sta bench-abuse bench-alerts bench-scale

## bench-deps: the bench extra (the engines compared, plotting, the peer bridge's client) and wrk
bench-deps: $(STAMP) services
	command -v wrk >/dev/null || apt-get install -y -q wrk
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'

## bench-aggregate: the numpy core against pandas, polars, DuckDB and InfluxDB
bench-aggregate: bench-deps
	$(BIN)/python -m bench.aggregate

## bench-api: the API's warm answers against answering each request from InfluxDB (needs wrk)
bench-api: bench-deps
	$(BIN)/python -m bench.api

## bench-sta: paging a month of one datastream through /sta/v1.1, against the store's own scan
bench-sta: bench-deps
	$(BIN)/python -m bench.sta

## bench-abuse: a flooding device against good ones; the costliest requests a read token can make
bench-abuse: bench-deps
	$(BIN)/python -m bench.abuse

## bench-alerts: publish-to-webhook latency of the alert service against a bare bridge; its CPU
bench-alerts: bench-deps
	$(BIN)/python -m bench.alerts_eval
	$(BIN)/python -m bench.alerts

## bench-ingest: ingest against its ceilings, InfluxDB's own, the peer bridge; the outage run
bench-ingest: bench-deps
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.ingest --outage

## bench-scaleout: 1, 2 and 3 ingest workers on one shared subscription; absent workers
bench-scaleout: bench-deps
	$(BIN)/python -m bench.scaleout
	$(BIN)/python -m bench.scaleout --absent

## bench-scale: the scale curves (tables and SVG plots into docs/scaling/): ingest against
## connected devices, the API against fleet size and report period, the store's bytes per reading
bench-scale: bench-deps
	$(BIN)/python -m bench.scale_ingest
	$(BIN)/python -m bench.scale_api
	$(BIN)/python -m bench.scale_store

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
