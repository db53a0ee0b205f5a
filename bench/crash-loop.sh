#!/usr/bin/env bash
# The long crash loop: runs the SIGKILL-mid-burst test (three kill points per run, each
# restarted and retried by idempotency key, then checked in PostgreSQL) and the
# database-outage and SIGTERM tests again and again, and prints a tally.
#
#   bench/crash-loop.sh [runs]      (default 10; each run takes about 15 s)
#
# Needs PostgreSQL on 127.0.0.1:5432. Traffic stays on loopback; every run is bounded.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-10}"
cargo nextest run --no-run --test reliability >/dev/null 2>&1 || { echo "build failed"; exit 1; }
passed=0
failed=0
for i in $(seq 1 "$RUNS"); do
  if cargo nextest run --test reliability --no-fail-fast >"/tmp/crash-loop-$i.log" 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "run $i failed: see /tmp/crash-loop-$i.log"
  fi
done
echo "crash loop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
