#!/usr/bin/env bash
# Builds one `colony` that needs only glibc: the Swift runtime and Foundation linked in
# (--static-swift-stdlib) with libstdc++ and libgcc, and libnng (with the mbedTLS it uses for TLS) and libsqlite3 linked
# from Debian's static archives.
#   deploy/build-static.sh [release|debug] [SCRATCH_PATH]     # prints the binary's path
# The modulemaps say `link "nng"` and `link "sqlite3"`; a private library folder searched first
# holds linker scripts of those names that point at the .a files (GROUP, so the archives'
# order does not matter), which keeps Package.swift and the ordinary `swift build` unchanged.
set -euo pipefail
config=${1:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=${2:-$root/.build}
# Absolute: the linker resolves -L against its own working folder.
scratch=$(mkdir -p "$scratch" && cd "$scratch" && pwd)
libdir=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
for a in libnng.a libmbedtls.a libmbedx509.a libmbedcrypto.a libsqlite3.a; do
    [ -f "$libdir/$a" ] || { echo "build-static: $libdir/$a is missing (install libnng-dev, libmbedtls-dev, libsqlite3-dev)" >&2; exit 1; }
done
scripts="$scratch/static-libs"
mkdir -p "$scripts"
echo "GROUP ( $libdir/libnng.a $libdir/libmbedtls.a $libdir/libmbedx509.a $libdir/libmbedcrypto.a )" >"$scripts/libnng.so"
echo "GROUP ( $libdir/libsqlite3.a )" >"$scripts/libsqlite3.so"
# The Swift runtime asks for -lstdc++ by name; its archive instead, and libgcc's (-static-libgcc).
echo "GROUP ( $(gcc -print-file-name=libstdc++.a) )" >"$scripts/libstdc++.so"
swift build --package-path "$root" -c "$config" --product colony --scratch-path "$scratch" --static-swift-stdlib \
    -Xlinker -L"$scripts" -Xswiftc -Xclang-linker -Xswiftc -static-libgcc >&2
echo "$scratch/$config/colony"
