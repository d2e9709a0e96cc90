#!/usr/bin/env bash
# Runs pytest and treats "no tests collected" (exit 5) as a failure.
set -u
PY="${1:-python3}"
shift || true
"$PY" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating as a failure" >&2
  exit 1
fi
exit "$rc"
