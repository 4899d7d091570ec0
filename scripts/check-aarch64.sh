#!/usr/bin/env bash
# Compiles every C source of the package for aarch64 (syntax and semantics, no object files):
# the portable kernels must build on ARM, where the AVX paths compile to nothing. Needs Debian's
# libc6-dev-arm64-cross for the target's libc headers; OpenBLAS's cblas.h is architecture-neutral,
# and the image libraries' configuration headers are borrowed from the host (declarations only).
set -euo pipefail
cd "$(dirname "$0")/.."
sysroot=/usr/aarch64-linux-gnu/include
if [ ! -d "$sysroot" ]; then
    echo "check-aarch64: $sysroot is missing (apt-get install libc6-dev-arm64-cross)" >&2
    exit 1
fi
cblas=$(dirname "$(find /usr/include -name cblas.h -path '*openblas*' | head -1)")
status=0
for source in Sources/CKernels/*.c Sources/CImageCodecs/*.c; do
    clang --target=aarch64-linux-gnu -fsyntax-only -Wall -Werror -isystem "$sysroot" -isystem "$cblas" -isystem /usr/include \
        -isystem "/usr/include/$(gcc -dumpmachine)" -ISources/CKernels/include -ISources/CImageCodecs/include "$source" || status=1
done
[ $status = 0 ] && echo "check-aarch64: every C source compiles for aarch64"
exit $status
