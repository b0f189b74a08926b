# whitebill: `make run` serves the demo, `make test` runs the whole suite. Both need only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

.PHONY: run test lint typecheck schema bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/whitebill migrate
	$(BIN)/whitebill demo
	PORT=$(PORT) $(BIN)/whitebill serve

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

schema: $(STAMP)
	$(BIN)/whitebill schema > schema.graphql

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) whitebill.sqlite3 whitebill.sqlite3-*
