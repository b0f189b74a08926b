# whitebill: `make run` serves the demo, `make test` runs the whole suite. Both need python3, and Node.js
# with npm to build the browser pages (web/: the reference portal and GraphiQL) from the npm registry.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

WEB_STAMP := web/dist/.built
WEB_SOURCES := web/package.json web/package-lock.json web/vite.config.ts web/tsconfig.json \
	$(shell find web/portal web/graphiql -type f 2>/dev/null)

.PHONY: run test test-serial lint typecheck schema bench mutate clean web docs

# The browser pages, built from pinned packages (web/package-lock.json) into web/dist, which whitebill serves.
web: $(WEB_STAMP)

web/node_modules/.installed: web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(WEB_STAMP): web/node_modules/.installed $(WEB_SOURCES)
	cd web && npm run --silent build
	@touch $@

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP) $(WEB_STAMP)
	$(BIN)/whitebill migrate
	$(BIN)/whitebill demo
	$(BIN)/whitebill operations register web/dist/portal-operations.graphql
	PORT=$(PORT) $(BIN)/whitebill serve

# Coverage of lines and branches, the servers and workers the tests start included (pyproject.toml's
# [tool.coverage.*]); tests/coverage_floors.py prints it per package and fails under the floors. It runs
# even when a test failed (the figures then understate), and the target fails if either failed.
#
# The SQLite half (with the tests of neither backend) and the PostgreSQL half run side by side, one pytest
# each (`--backend`, tests/conftest.py), each with its own coverage data, which tests/coverage_floors.py
# combines; each half's output is shown when both are done. `make test-serial` runs them in one process.
# After the SQLite half, in the same background job, the money tests run again on PostgreSQL through
# pgbouncer in transaction mode (`--via-pgbouncer`, tests/pgbouncer.py; docs/operations/pgbouncer.md).
PGBOUNCER_TESTS := tests/test_ledger.py tests/test_idempotency.py tests/test_payments.py \
	tests/test_refund_lifecycles.py tests/test_wallet_top_ups.py tests/test_exact_usage.py tests/test_crash.py

# Python 3.13 too: with PYTHON313 naming its interpreter (.ci/run finds pyenv's), `make test` also runs the
# SQLite half, with the tests of neither backend, on it (in .venv/py3.13, without coverage), beside the others.
PYTHON313 ?=
# Inside .venv: ignored by git and the linters, removed by `make clean` with it.
VENV313 := $(VENV)/py3.13
PYTEST_FLAGS := -p no:cacheprovider --durations=15

$(VENV313)/.installed: pyproject.toml
	@test -x $(VENV313)/bin/python || $(PYTHON313) -m venv $(VENV313)
	$(VENV313)/bin/python -m pip install --quiet --upgrade pip
	$(VENV313)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $@

test: $(STAMP) $(WEB_STAMP) lint typecheck $(if $(PYTHON313),$(VENV313)/.installed)
	rm -f .coverage .coverage.*
	status=0; py313=; \
	if [ -n "$(PYTHON313)" ]; then \
	  $(VENV313)/bin/python -m pytest --backend=sqlite $(PYTEST_FLAGS) > .test-sqlite-3.13.log 2>&1 & py313=$$!; \
	fi; \
	( COVERAGE_FILE=.coverage.half-sqlite $(BIN)/python -m pytest --backend=sqlite $(PYTEST_FLAGS) --cov --cov-report= \
		> .test-sqlite.log 2>&1; first=$$?; \
	  COVERAGE_FILE=.coverage.half-pgbouncer $(BIN)/python -m pytest --backend=postgres --via-pgbouncer \
		--cov --cov-report= $(PGBOUNCER_TESTS) > .test-pgbouncer.log 2>&1 || first=1; exit $$first ) & sqlite=$$!; \
	COVERAGE_FILE=.coverage.half-postgres $(BIN)/python -m pytest --backend=postgres $(PYTEST_FLAGS) --cov --cov-report= \
		> .test-postgres.log 2>&1 & postgres=$$!; \
	wait $$sqlite || status=1; wait $$postgres || status=1; \
	if [ -n "$$py313" ]; then wait $$py313 || status=1; fi; \
	echo "=== the SQLite half, and the tests of neither backend ==="; cat .test-sqlite.log; \
	echo "=== the PostgreSQL half ==="; cat .test-postgres.log; \
	echo "=== the money tests on PostgreSQL through pgbouncer ==="; cat .test-pgbouncer.log; \
	if [ -n "$$py313" ]; then echo "=== the SQLite half on Python 3.13 ==="; cat .test-sqlite-3.13.log; fi; \
	$(BIN)/python -m tests.coverage_floors || status=1; \
	exit $$status

test-serial: $(STAMP) $(WEB_STAMP) lint typecheck
	rm -f .coverage .coverage.*
	status=0; \
	$(BIN)/python -m pytest --cov --cov-report= || status=1; \
	$(BIN)/python -m tests.coverage_floors || status=1; \
	exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

schema: $(STAMP)
	$(BIN)/whitebill schema > schema.graphql

# The documentation site (mkdocs.yml, docs/) into site/, git-ignored; strict: any warning (a broken link, a
# page missing from the nav, an unknown anchor) fails. The API reference is generated from schema.graphql.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(BIN)/python -m bench

# Mutation testing of the money core (slow: not part of `make test` or CI). One worker; Hypothesis derandomised
# (CI=true). mutmut works in ./mutants and remembers results there: a second run only retests mutants whose
# function changed (no mutant names are passed: naming them makes mutmut run every named one again).
mutate: $(STAMP)
	CI=true $(BIN)/mutmut run --max-children 1
	@echo "Mutants per module and outcome:"
	@$(BIN)/mutmut results --all true | sed -E -n 's/^ *(billing\.[a-z_.]+)\.x[^:]*__mutmut_[0-9]+: (.*)/\1: \2/p' | sort | uniq -c
	@echo "Survivors (see docs/quality/mutation-testing.md):"
	@$(BIN)/mutmut results | grep -E ": (survived|no tests)$$" || true

clean:
	rm -rf $(VENV) whitebill.sqlite3 whitebill.sqlite3-* .coverage .coverage.* htmlcov mutants web/node_modules web/dist site
