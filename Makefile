# Kiln: one-command set-up on a fresh Debian/Ubuntu machine.
APT_PACKAGES := libopenblas-dev liblapacke-dev libjpeg-dev libtiff-dev libpng-dev libomp-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps build release test demo bench clean

# Installs the system libraries only when one is missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	swift build

release: deps
	swift build -c release

# The CLI tests run the debug graphc/landuse binaries, so build them first.
test: deps
	swift build
	swift test

# The study on the embedded synthetic land-use set (64² inputs): every strategy, report and plots.
demo: release
	.build/release/landuse compare --out runs/demo
	@echo "report: runs/demo/report.md"

bench: release
	.build/release/kiln-bench

clean:
	rm -rf .build
