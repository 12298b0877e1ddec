# One virtualenv for everything; the only prerequisite is python3 (>= 3.11).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: venv test check lint typecheck unit unit-fast clean demo bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest

test: lint typecheck unit

# The fast lane, while working: lint, types and the unit tests, leaving out the tests marked
# subprocess, soak or crash (pyproject.toml). `make test` runs everything; CI runs `make test`.
unit-fast: venv
	$(BIN)/pytest -q -m "not subprocess and not soak and not crash"

check: lint typecheck unit-fast

# Benchmarks and the planner-vs-original simulation (prints figures; not part of `test`).
bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

demo: venv
	$(BIN)/regolancer-orchestrator demo
