# Lingxi: the two commands are `make run` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
DATA_DIR ?= ./data
PG_URL ?= postgres://postgres@127.0.0.1:5432
export LINGXI_TEST_PG_URL ?= $(PG_URL)

.PHONY: run setup build test test-sqlite test-postgres lint schema bench-import bench-search clean-data

## Set up what is missing, then serve the API with in-process workers, SQLite,
## the embedded index and the demo brand. The admin key lives in $(DATA_DIR)/admin.key.
run: setup build
	@mkdir -p $(DATA_DIR)
	@[ -s $(DATA_DIR)/admin.key ] || (umask 077; printf 'lx_%s\n' "$$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 40)" > $(DATA_DIR)/admin.key)
	LINGXI_DATA_DIR=$(DATA_DIR) LINGXI_ADMIN_KEY=$$(cat $(DATA_DIR)/admin.key) ./target/debug/api

## Downloads (once) what the product needs from package registries.
setup:
	@./scripts/setup.sh

build:
	$(CARGO) build --workspace --bins

## The whole suite: lint, unit tests, end-to-end on SQLite, then again on
## PostgreSQL when one answers at $(PG_URL).
test: setup build lint test-sqlite test-postgres

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test-sqlite:
	$(CARGO) test --workspace

test-postgres:
	@if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then \
	  echo "== end-to-end suite on PostgreSQL ($(PG_URL))"; \
	  LINGXI_TEST_BACKEND=postgres $(CARGO) test -p tests --test e2e; \
	else \
	  echo "== PostgreSQL not answering on 127.0.0.1:5432: skipped the PostgreSQL run"; \
	fi

## Regenerates frontend-schema/schema.graphql from the live schema.
schema:
	UPDATE_SCHEMA=1 $(CARGO) test -p tests --test e2e frontend_schema

## Import throughput benchmark (release build); see docs/benchmarks.md.
bench-import:
	$(CARGO) build --release --workspace --bins
	LINGXI_API_BIN=target/release/api ./target/release/bench_import $(ARGS)

## Segment search benchmark (release build), e.g. ARGS="--members 1000000" or
## ARGS="--backend both" with LINGXI_MEILI_URL set; see docs/benchmarks.md.
bench-search:
	$(CARGO) build --release --workspace --bins
	./target/release/lingxi-search-bench $(ARGS)

clean-data:
	rm -rf $(DATA_DIR)
