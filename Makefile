# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: install system-deps demo run test unit lint bench soak clean

# Java 17 (Debezium's JVM) and PostgreSQL 15's server binaries (the embedded demo/test database);
# Chromium and its driver for the browser test of the Dagster UI
system-deps:
	@if ! command -v java >/dev/null 2>&1 || ! command -v pg_config >/dev/null 2>&1 \
	    || [ ! -x "$$(pg_config --bindir 2>/dev/null)/initdb" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Java 17 and PostgreSQL 15 server binaries (apt-get)"; \
	    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless postgresql-15 postgresql-server-dev-15 curl >/dev/null; \
	  else \
	    echo "need Java 17 and PostgreSQL 15 server binaries: sudo apt-get install openjdk-17-jre-headless postgresql-15 postgresql-server-dev-15"; exit 1; \
	  fi; \
	fi
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Chromium and its driver (apt-get; the Dagster UI's browser test)"; \
	    apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else \
	    echo "need Chromium for the browser test: sudo apt-get install chromium chromium-driver"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: system-deps $(STAMP)

demo: install            ## the embedded demo: make demo ARGS="--duration 60"
	$(VENV)/bin/cdc demo $(ARGS)

test: install lint       ## everything: unit, contract, integration and end-to-end tests
	$(PY) -m pytest -q -p no:cacheprovider --ignore=tests/integration/test_shop_envelopes.py
	@# its own process, so its own JVM: after other Debezium engines in the same JVM its stream stalls (open question)
	$(PY) -m pytest -q -p no:cacheprovider tests/integration/test_shop_envelopes.py

unit: install
	$(PY) -m pytest -q tests/unit

lint: install
	$(VENV)/bin/ruff check cdc pipelines dagster_project tests bench
	$(VENV)/bin/ruff format --check cdc pipelines dagster_project tests bench
	$(VENV)/bin/mypy cdc pipelines dagster_project
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/cdc events check --translators cdc.demo.events --snapshot event-catalog.json

bench: install           ## make bench ARGS="--quick"
	$(PY) -m bench.run $(ARGS)

DURATION ?= 900
soak: install            ## load + faults at random moments, then parity, memory and lag: make soak DURATION=900
	$(PY) -m bench.soak --duration $(DURATION) $(ARGS)

clean:
	rm -rf .cdc bench/results
