#!/usr/bin/env bash
# Build the real wadm used by the `realhost` wadm tests (tests/realhost/wadm,
# `wsp-test-wadm` around the wadm library 0.21.1) and
# print the path of the binary on stdout (cargo's output goes to stderr).
#
# The target directory is cached outside the repository, so the cold build happens
# once; later runs take a second or two (cargo sees nothing to do).
#
#   tests/realhost/build_wadm.sh               build (if needed), print the path
#   tests/realhost/build_wadm.sh --print-path  print the path only, build nothing
#
# Environment: WSP_TEST_WADM_TARGET_DIR overrides the target directory
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/wasmcloud-websocket-provider/wadm).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target="${WSP_TEST_WADM_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmcloud-websocket-provider/wadm}"
bin="$target/release/wsp-test-wadm"

if [ "${1:-}" = "--print-path" ]; then
    echo "$bin"
    exit 0
fi

command -v cargo >/dev/null || { echo "build_wadm.sh: cargo is not installed" >&2; exit 1; }
mkdir -p "$target"
# nice: the cold build takes both cores for a while; leave room for other work.
CARGO_TARGET_DIR="$target" nice -n 19 cargo build --release --locked \
    --manifest-path "$here/wadm/Cargo.toml" 1>&2
test -x "$bin"
echo "$bin"
