#!/usr/bin/env bash
# Installs what Colony needs from Debian/Ubuntu packages, only where it is missing:
# libnng-dev (the nng C library Colony links), libsqlite3-dev (the coordinator's journal) and
# nng-utils (nngcat, for tests that send raw bytes). `--for-tests` adds chromium (headless,
# for the dashboard test), openssl (throwaway CAs for the TLS tests), python3 (its `ssl`
# module is the HTTPS client of one test) and prometheus (for promtool, which lints /metrics;
# Debian ships promtool only in that package, so its server is disabled right after).
# Run as root or with sudo available.
set -euo pipefail

missing=()
dpkg -s libnng-dev >/dev/null 2>&1 || missing+=(libnng-dev)
dpkg -s libsqlite3-dev >/dev/null 2>&1 || missing+=(libsqlite3-dev)
# nngcat (nng's own client) for the tests that send raw bytes to a coordinator.
dpkg -s nng-utils >/dev/null 2>&1 || missing+=(nng-utils)
recommends_off=()
if [ "${1:-}" = "--for-tests" ]; then
    # A real browser loads the dashboard in the tests (no X server needed: --headless).
    command -v chromium >/dev/null || dpkg -s chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v python3 >/dev/null || missing+=(python3)
    command -v promtool >/dev/null || missing+=(prometheus)
    recommends_off=(--no-install-recommends)
fi
if [ "${1:-}" = "--with-tools" ]; then
    # protoc for proto/generate.sh.
    dpkg -s protobuf-compiler >/dev/null 2>&1 || missing+=(protobuf-compiler)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v swift >/dev/null; then
    echo "install-deps: no 'swift' on PATH; Colony needs a Swift 6 toolchain (swift.org/install)" >&2
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "install-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${recommends_off[@]}" "${missing[@]}" >/dev/null
# The tests need promtool, not a Prometheus server listening on :9090.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || echo "install-deps: could not stop the prometheus service" >&2
fi
