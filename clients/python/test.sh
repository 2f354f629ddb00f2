#!/bin/bash
# The Python package's tests (pytest) against real coordinator and node processes: installs
# what is missing (a venv in clients/python/.venv with pynng, protobuf, pytest and the package,
# editable), then runs them. Uses COLONY_BIN, else .build/debug/colony (built if missing).
set -euo pipefail
cd "$(dirname "$0")"
repo=$(cd ../.. && pwd)
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import pynng, google.protobuf, pytest, colony.node' 2>/dev/null; then
    .venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
fi
if [ -z "${COLONY_BIN:-}" ] && [ ! -x "$repo/.build/debug/colony" ]; then
    (cd "$repo" && swift build --product colony)
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
