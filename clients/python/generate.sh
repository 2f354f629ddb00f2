#!/bin/bash
# Regenerates src/colony/colony_pb2.py from proto/colony/v1/colony.proto (needs protoc:
# apt-get install protobuf-compiler). The generated file is committed; the runtime needs
# protobuf >= 4.21.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
protoc -I ../../proto --python_out="$out" ../../proto/colony/v1/colony.proto
cp "$out/colony/v1/colony_pb2.py" src/colony/colony_pb2.py
