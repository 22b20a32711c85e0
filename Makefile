# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The interpreter's version is part of the stamp: switching PYTHON (or upgrading it) rebuilds .venv
# instead of leaving one made by another interpreter behind.
VERSION_OF = $(shell $(1) -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)
PYVER := $(call VERSION_OF,$(PYTHON))
STAMP := $(VENV)/.installed-$(or $(PYVER),none)
# A .venv whose interpreter is gone or another one (pyenv switched, Python upgraded) is rebuilt too.
ifneq ($(call VERSION_OF,$(BIN)/python),$(PYVER))
STALE := FORCE
endif

.PHONY: run test lint bench clean readme chaos lock FORCE

# Installs exactly the locked versions (requirements-dev.txt, hash-checked: what production runs plus
# the test tools), then the checkout itself, editable. The second step also brings in a dependency
# that pyproject.toml names but the lock does not have yet; tests/test_lock.py then says to run `make lock`.
$(STAMP): pyproject.toml requirements-dev.txt $(STALE)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "make: seatbot needs Python 3.11 or newer, and PYTHON=$(PYTHON) is $(if $(PYVER),Python $(PYVER),not a working Python)." >&2; \
	  echo "make: install Python 3.11+ and name it, e.g. make PYTHON=python3.12 $(or $(MAKECMDGOALS),run)" >&2; \
	  exit 1; }
	@if [ -e $(VENV) ] && [ "$$($(BIN)/python -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)" != "$(PYVER)" ]; then \
	  echo "make: $(VENV) was made by another Python (or is broken): rebuilding it with Python $(PYVER)"; \
	  rm -rf $(VENV); \
	fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --require-hashes -r requirements-dev.txt
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed*
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

# Re-resolve uv.lock after a change to pyproject.toml's dependencies (keeping every other pin; add
# LOCK_ARGS=--upgrade to move everything to the newest allowed release) and write the files pip reads:
# requirements.txt (production), requirements-dev.txt (+ test tools), requirements-build.txt (build tools).
lock: $(STAMP)
	$(BIN)/python -m pip install -q 'uv>=0.5'
	$(BIN)/uv lock $(LOCK_ARGS)
	$(BIN)/uv export -q --frozen --no-dev --no-emit-project -o requirements.txt
	$(BIN)/uv export -q --frozen --no-dev --extra test --no-emit-project -o requirements-dev.txt
	$(BIN)/uv export -q --frozen --only-group build --no-emit-project -o requirements-build.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
