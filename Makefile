# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean readme chaos

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	@$(BIN)/python -m bot $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check bot tests bench
	$(BIN)/ruff format --check bot tests bench
	$(BIN)/mypy bot tests bench

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault scenarios alone (kill mid-sweep or mid-fire, Redis wiped, huge Retry-After, Slack 500);
# `make test` and CI run them with everything else.
chaos: $(STAMP)
	$(BIN)/python -m pytest -m chaos $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py $(ONLY)

# The README's samples come from real runs; tests/test_readme.py says when to run this.
readme: $(STAMP)
	$(BIN)/python -m tests.support.readme

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info
