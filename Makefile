# The README's two commands are `make run` and `make test`; each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench e2e-host lint typecheck check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# examples/rust-component builds for wasm32-wasip2 (its test skips without the target)
	@if command -v rustup >/dev/null 2>&1; then \
		rustup target add wasm32-wasip2 >/dev/null 2>&1 \
			|| echo "note: 'rustup target add wasm32-wasip2' failed: the Rust component test will skip"; \
	fi
	touch $(STAMP)

## run: the dev mode (embedded NATS, provider, echo handler). Optional:
##   LISTEN=host:port[/path]  where the endpoint listens (default 127.0.0.1:8080, path /ws)
##   NATS_URL=nats://...      use that NATS server instead of an embedded one
##   CONFIG="K=V K=V"         server-mode config keys for the endpoint (e.g. METRICS=true)
##   CONFIG_FILE=path         a file of KEY=VALUE lines (applied before CONFIG)
LISTEN ?= 127.0.0.1:8080
NATS_URL ?=
CONFIG ?=
CONFIG_FILE ?=
run: $(STAMP)
	$(BIN)/python -m provider dev --listen '$(LISTEN)' \
		$(if $(NATS_URL),--nats-url '$(NATS_URL)') \
		$(if $(CONFIG_FILE),--config-file '$(CONFIG_FILE)') \
		$(foreach pair,$(CONFIG),--config '$(pair)')

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

## e2e-host: end to end under a real wasmCloud 1.x host (tests/realhost). Builds the host
## (wasmcloud-host 0.27.1; 25-45 min the first time, cached in ~/.cache), wadm (the wadm crate
## 0.21.1, cached likewise), wash (0.43.0 from crates.io, about an hour the first time, cached
## likewise), the Rust component and the provider archive, then runs the `realhost` tests
## (wadm.minimal.yaml deployed through wadm, by the README's wash commands, among them).
E2E_COMPONENT := examples/rust-component
E2E_PAR := build/e2e/wasmcloud-websocket-provider.par.gz
# -s: the stress tests print their figures (latency, msgs/s, CPU, recovered links)
E2E_PYTEST_ARGS ?= -s
e2e-host: $(STAMP)
	bash tests/realhost/build_host.sh
	bash tests/realhost/build_wadm.sh
	bash tests/realhost/build_wash.sh
	cargo build --release --target wasm32-wasip2 --manifest-path $(E2E_COMPONENT)/Cargo.toml
	$(BIN)/python -m provider package --out-dir build/e2e --keys-dir build/e2e/keys
	WSP_TEST_PAR=$(CURDIR)/$(E2E_PAR) bash scripts/pytest.sh $(BIN)/python -m realhost $(E2E_PYTEST_ARGS) tests/realhost

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
