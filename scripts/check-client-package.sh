#!/usr/bin/env bash
# Builds Tests/ClientPackage in release against a bare clone of this repository's HEAD tagged
# 0.1.0, through `.package(url: "file://…", from: "0.1.0")`, and runs it: SwiftPM refuses a
# versioned dependency with unsafe build flags, so this is the check that Kiln can be one.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-client.XXXXXX")
trap 'rm -rf "$work"' EXIT
git clone -q --bare . "$work/kiln.git"
git -C "$work/kiln.git" tag 0.1.0 HEAD
cp -R Tests/ClientPackage "$work/client"
sed -i "s|KILN_URL|file://$work/kiln.git|" "$work/client/Package.swift"
echo "check-client-package: building a client of kiln 0.1.0 (HEAD $(git rev-parse --short HEAD)) in release"
swift build -c release --package-path "$work/client" 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\]' || { echo "check-client-package: build failed" >&2; exit 1; }
"$work/client/.build/release/client"
