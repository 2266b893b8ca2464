# sterimesh: every target creates .venv from pyproject.toml when it is missing or stale.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the fold compiled with mypyc (crdt_model/_compiled.py); used only while it matches its sources
COMPILED := $(VENV)/sterimesh-compiled/crdt_model/SOURCES
COMPILED_FROM := $(wildcard crdt_model/*.py)

.PHONY: test demo bench lint venv compiled clean

venv: $(STAMP)

compiled: $(COMPILED)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# without gcc the fold runs interpreted (CI fails then: tests/crdt_model/test_compiled.py)
$(COMPILED): $(STAMP) $(COMPILED_FROM)
	$(BIN)/python -c "from crdt_model._compiled import main; main()" \
		|| echo "sterimesh: the fold could not be compiled (gcc?): it runs interpreted"

# the model's tests run twice: compiled (with everything else), then interpreted
test: $(STAMP) $(COMPILED)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)
	STERIMESH_PURE=1 $(BIN)/python -m pytest -q tests/crdt_model

demo: $(STAMP) $(COMPILED)
	$(BIN)/sterimesh demo

bench: $(STAMP) $(COMPILED)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
