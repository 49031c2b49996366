# SPDX-License-Identifier: MIT
# Thin wrapper over CMake. `make run` and `make test` are the whole set-up.
BUILD      ?= build
ASAN_BUILD ?= build/asan
JOBS       ?= $(shell nproc)
PREFIX     ?= /usr/local

.PHONY: all build run test test-fast asan deps clean install

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/bin/skald up

# Every test in the regular build, then unit and integration tests again
# built with AddressSanitizer + UndefinedBehaviorSanitizer.
test: build asan
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -L 'unit|integration|service|system'

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
	    "-DSK_SANITIZE=address;undefined" >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD)
