#!/usr/bin/env bash
# Regenerates Sources/Kiln/IO/ONNX/onnx.pb.swift from the official onnx.proto (proto2), with
# Debian's protoc and swift-protobuf's protoc-gen-swift (same version as Package.swift's
# swift-protobuf). The generated file is committed: builds never need protoc.
#   ONNX_PROTO=path/to/onnx.proto    default: the one the `onnx` PyPI wheel ships
#   PROTOC_GEN_SWIFT=path/to/plugin  default: built from swift-protobuf 1.39.0 under .build-tools/
set -euo pipefail
cd "$(dirname "$0")/.."
proto=${ONNX_PROTO:-$(python3 -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "onnx.proto"))')}
plugin=${PROTOC_GEN_SWIFT:-}
if [ -z "$plugin" ]; then
    tools=.build-tools/swift-protobuf
    [ -d "$tools" ] || git clone -q --branch 1.39.0 https://github.com/apple/swift-protobuf "$tools"
    swift build -c release --package-path "$tools" --product protoc-gen-swift
    plugin=$tools/.build/release/protoc-gen-swift
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$proto" "$work/onnx.proto"
protoc --plugin=protoc-gen-swift="$plugin" --swift_opt=Visibility=Internal \
    --swift_out=Sources/Kiln/IO/ONNX -I "$work" "$work/onnx.proto"
echo "wrote Sources/Kiln/IO/ONNX/onnx.pb.swift from $proto"
