# Kiln: one-command set-up on a fresh Debian/Ubuntu machine.
APT_PACKAGES := libopenblas-dev liblapacke-dev libjpeg-dev libtiff-dev libpng-dev
# Only `make test` needs these: aarch64 libc headers (cross-compile check), Open MPI (mpirun tests).
TEST_APT_PACKAGES := libc6-dev-arm64-cross libopenmpi-dev openmpi-bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

FUZZ_SECONDS ?= 5

PACKAGES ?= $(APT_PACKAGES)

.PHONY: deps test-deps build release test fuzz format lint demo bench clean

# Installs the system libraries only when one is missing.
deps:
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

test-deps:
	@$(MAKE) --no-print-directory deps PACKAGES="$(APT_PACKAGES) $(TEST_APT_PACKAGES)"

build: deps
	swift build

release: deps
	swift build -c release

# Tests run in release with testability: without unsafe flags the C kernels are unoptimised in
# debug builds. The CLI tests run the tools of the same build. Each loader's fuzz target runs a
# few seconds on its corpus (a crash fails the build); the kernel tests run again on every
# instruction-set path of this CPU (KILN_ISA); the C sources compile for aarch64; a client package
# builds Kiln as a tagged dependency.
RELEASE_TESTS := -c release -Xswiftc -enable-testing
KERNEL_SUITES := KilnTests|InstructionSetTests
test: test-deps lint
	swift build $(RELEASE_TESTS) --build-tests
	Fuzz/run.sh all $(FUZZ_SECONDS)
	swift test $(RELEASE_TESTS) --skip-build
	for isa in $$(.build/release/kiln-bench --list-instruction-sets); do \
		echo "== kernel tests, KILN_ISA=$$isa"; \
		KILN_ISA=$$isa swift test $(RELEASE_TESTS) --skip-build --filter '$(KERNEL_SUITES)' || exit 1; \
	done
	scripts/check-aarch64.sh
	scripts/check-client-package.sh

# The toolchain's formatter (.swift-format: 4 spaces, 140 columns): `make format` applies it,
# `make lint` (part of `make test`) fails on code it would change.
SWIFT_SOURCES := Package.swift Sources Models Tests Benchmarks Fuzz/Package.swift Fuzz/Sources
format:
	swift format -i -r $(SWIFT_SOURCES)

lint:
	swift format lint --strict -r $(SWIFT_SOURCES)

# A longer fuzzing campaign: FUZZ_SECONDS per target (Docs/Reliability.md).
fuzz:
	Fuzz/run.sh all $(FUZZ_SECONDS)

# The study on the embedded synthetic land-use set (64² inputs): every strategy, report and plots.
demo: release
	.build/release/landuse compare --out runs/demo
	@echo "report: runs/demo/report.md"

bench: release
	.build/release/kiln-bench

clean:
	rm -rf .build .build-fuzz
