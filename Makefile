# batchproc: build, test, bench, lint, fmt.
CARGO ?= cargo

.PHONY: build test lint fmt bench clean

build:
	$(CARGO) build --release --bins --examples

# The whole suite: formatting, lints, unit + integration tests + doctests.
test: lint
	$(CARGO) test --all-targets
	$(CARGO) test --doc

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
