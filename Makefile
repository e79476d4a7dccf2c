# batchproc: build, test, bench, lint, fmt.
CARGO ?= cargo

.PHONY: build test test-crash lint fmt bench clean

build:
	$(CARGO) build --release --bins --examples

# The whole suite: formatting, lints, unit + integration tests + doctests.
test: lint
	$(CARGO) test --all-targets --no-fail-fast
	$(CARGO) test --doc

# The crash matrix at depth: tests/crash.rs (every source into every sink,
# SIGKILLed at random points and resumed) with 50 kill points per cell, so
# at least 50 per sink, on the release binary users run (`make test` runs
# the same file with 6 per cell on the debug build). Replay a failure with
# the BATCHPROC_CRASH_SEED its message prints. The Postgres cells use the
# local server, as `make test`'s Postgres tests do.
test-crash:
	BATCHPROC_CRASH_KILLS=50 $(CARGO) test --release --test crash

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

# Side-by-side benchmarks against the tools people would otherwise use.
# Generates its data under bench-data/ (not committed); installs its peers with apt.
bench: build
	bash benches/run.sh

clean:
	$(CARGO) clean
	rm -rf bench-data
