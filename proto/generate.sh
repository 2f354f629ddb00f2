#!/usr/bin/env bash
# Regenerates Sources/ColonyWire/Generated/ from proto/colony/v1/*.proto.
#
# Needs protoc (Debian: protobuf-compiler) and protoc-gen-swift of the swift-protobuf version
# that Package.swift uses. If protoc-gen-swift is not on PATH, it is built once from the
# package checkout SwiftPM already resolved (.build/checkouts/swift-protobuf).
# The generated code is committed so that normal builds never need the generator.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! command -v protoc >/dev/null; then
    echo "protoc missing: apt-get install -y protobuf-compiler" >&2
    exit 1
fi

plugin=$(command -v protoc-gen-swift || true)
if [ -z "$plugin" ]; then
    swift package resolve >/dev/null
    checkout=.build/checkouts/swift-protobuf
    scratch=.build-protoc-gen-swift
    swift build -c release --package-path "$checkout" --scratch-path "$scratch" --product protoc-gen-swift >&2
    plugin="$root/$scratch/release/protoc-gen-swift"
fi

out=Sources/ColonyWire/Generated
mkdir -p "$out"
protoc --plugin=protoc-gen-swift="$plugin" \
    --proto_path=proto \
    --swift_out="$out" \
    --swift_opt=Visibility=Public \
    --swift_opt=FileNaming=PathToUnderscores \
    proto/colony/v1/colony.proto
echo "generated $(ls "$out")"
