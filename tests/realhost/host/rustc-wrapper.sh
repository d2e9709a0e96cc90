#!/bin/sh
# A RUSTC_WRAPPER: cargo runs `rustc-wrapper.sh <path-to-rustc> <args...>`.
#
# wasmcloud-host 0.27.1 (src/wasmbus/ctl.rs) fails on recent rustc (1.95) with
# "queries overflow the depth limit"; it needs `#![recursion_limit = "256"]`,
# which the crate does not set. Add that attribute to that one crate only
# (-Zcrate-attr is unstable, hence RUSTC_BOOTSTRAP=1 for that one invocation).
rustc="$1"
shift
for arg in "$@"; do
    if [ "$prev" = "--crate-name" ] && [ "$arg" = "wasmcloud_host" ]; then
        RUSTC_BOOTSTRAP=1 exec "$rustc" "$@" '-Zcrate-attr=recursion_limit="256"'
    fi
    prev="$arg"
done
exec "$rustc" "$@"
