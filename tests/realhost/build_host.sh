#!/usr/bin/env bash
# Build the real wasmCloud host used by the `realhost` tests (tests/realhost/host,
# `wsp-test-host` around wasmcloud-host 0.27.1 = wasmCloud v1.9.2) and print the
# path of the binary on stdout (cargo's output goes to stderr).
#
# The target directory is cached outside the repository, so the 25-45 minute cold
# build happens once; later runs take a second or two (cargo sees nothing to do).
#
#   tests/realhost/build_host.sh               build (if needed), print the path
#   tests/realhost/build_host.sh --print-path  print the path only, build nothing
#
# Environment: WSP_TEST_HOST_TARGET_DIR overrides the target directory
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/wasmcloud-websocket-provider/host).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target="${WSP_TEST_HOST_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmcloud-websocket-provider/host}"
bin="$target/release/wsp-test-host"

if [ "${1:-}" = "--print-path" ]; then
    echo "$bin"
    exit 0
fi

command -v cargo >/dev/null || { echo "build_host.sh: cargo is not installed" >&2; exit 1; }
mkdir -p "$target"
# RUSTC_WRAPPER adds `#![recursion_limit = "256"]` to the wasmcloud_host crate only
# (see host/rustc-wrapper.sh); it replaces any wrapper (sccache, ...) set outside.
# nice: the cold build takes both cores for a long time; leave room for other work.
CARGO_TARGET_DIR="$target" RUSTC_WRAPPER="$here/host/rustc-wrapper.sh" \
    nice -n 19 cargo build --release --locked \
    --manifest-path "$here/host/Cargo.toml" 1>&2
test -x "$bin"
echo "$bin"
