# Thin wrapper: each target does its own set-up first (scripts/setup.sh is
# idempotent), so a fresh Debian 12 machine needs nothing else.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: all build test test-sanitize fuzz demo clean

all: build

build:
	scripts/setup.sh --build-dir $(BUILD)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) -LE device

# Unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
test-sanitize:
	scripts/setup.sh --build-dir build-asan --sanitize
	ctest --test-dir build-asan --output-on-failure -j $(JOBS) -L unit

# Each libFuzzer target for a short, fixed number of runs from its corpus.
fuzz:
	scripts/setup.sh --build-dir build-fuzz --fuzz
	scripts/run-fuzzers.sh build-fuzz

# The demo (the whole loop on the shapes world) arrives with its own issue;
# until then this target says so instead of pretending.
demo: build
	@echo "make demo: 'dpo demo' is not implemented yet (see the shapes-world issue)." >&2; exit 1

clean:
	rm -rf $(BUILD) build-asan build-fuzz
