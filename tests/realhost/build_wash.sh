#!/usr/bin/env bash
# Install the `wash` CLI the README's deploy commands are written for (wash 0.43.0, the
# wash of wasmCloud 1.9.x, from crates.io) for the `realhost` wash test, and print the path
# of the binary on stdout (cargo's output goes to stderr).
#
# Installed outside the repository, once: the cold build takes about an hour on 2 cores
# (nice, one job at a time); later runs print the path at once.
#
#   tests/realhost/build_wash.sh               build (if needed), print the path
#   tests/realhost/build_wash.sh --print-path  print the path only, build nothing
#
# Environment: WSP_TEST_WASH_ROOT overrides the install root
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/wasmcloud-websocket-provider/wash).
set -euo pipefail

root="${WSP_TEST_WASH_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/wasmcloud-websocket-provider/wash}"
bin="$root/bin/wash"

if [ "${1:-}" = "--print-path" ]; then
    echo "$bin"
    exit 0
fi

if [ ! -x "$bin" ]; then
    command -v cargo >/dev/null || { echo "build_wash.sh: cargo is not installed" >&2; exit 1; }
    CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" nice -n 19 \
        cargo install wash --version 0.43.0 --locked --root "$root" 1>&2
fi
test -x "$bin"
echo "$bin"
