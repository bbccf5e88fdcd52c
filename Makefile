# meshfed developer entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: test demo system-deps unit integration docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## test: ruff (lint + format check), mypy --strict, import-linter contracts, pytest (all tiers)
test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest

## demo: the main job; until `meshfed up` lands, the trust walkthrough
demo: $(STAMP) system-deps
	PATH="$(abspath $(BIN)):$$PATH" bash examples/trust-walkthrough.sh

## system-deps: tools the tests call that pip cannot install (openssl CLI)
system-deps:
	@command -v openssl >/dev/null || { \
	  echo "installing openssl (Debian package)"; \
	  apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

## docs: regenerate docs/cli.md from --help
docs: $(STAMP)
	$(BIN)/python -m federation.cli.reference > docs/cli.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
