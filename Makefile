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

# The whole loop on the built-in shapes world (dpo demo): base model, AI-feedback
# pairs, Diffusion-DPO, generation, a simulated 5-vote study, the report.
demo: build
	build/dpo demo --out demo-out

clean:
	rm -rf $(BUILD) build-asan build-fuzz
