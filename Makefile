# The README's two commands are `make run` and `make test`; each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint typecheck check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: the dev mode (embedded NATS, provider, echo handler)
run: $(STAMP)
	$(BIN)/python -m provider dev

## test: lint, type-check and the whole test suite (what CI runs)
test: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy
	bash scripts/pytest.sh $(BIN)/python

## bench: the full benchmark harness (needs Node.js; several minutes); updates BENCHMARKS.md
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench all

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
