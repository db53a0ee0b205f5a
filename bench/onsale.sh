#!/usr/bin/env bash
# The on-sale benchmark: the conventional design (a row-lock transaction per hold, under
# pgbench) and boxoffice's `hot-ga` scenario, at the same concurrency, against the same
# PostgreSQL, in one run. Prints both and their ratio.
#
#   bench/onsale.sh [concurrency] [seconds]       (defaults: 256 clients, 20 s)
#
# Needs: PostgreSQL on 127.0.0.1:5432 (user postgres), pgbench, a release build (built here).
# Traffic goes to loopback only; everything stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
CONCURRENCY="${1:-256}"
SECONDS_PER_RUN="${2:-20}"
BASELINE_DB="boxoffice_bench_baseline"
ENGINE_DB="boxoffice_bench_engine"
PORT="${BENCH_PORT:-3997}"
export JWT_SECRET="bench-secret-$(date +%s)-bench-secret-bench"
export RUST_LOG=warn

cargo build --release --quiet --bin boxoffice
BIN=target/release/boxoffice

psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $BASELINE_DB WITH (FORCE)" -c "DROP DATABASE IF EXISTS $ENGINE_DB WITH (FORCE)" >/dev/null

# --- The baseline: same schema, one GENERAL section far larger than the run can sell. ---
baseline "$BASELINE_DB" "$SECONDS_PER_RUN"
best_tps=$BEST_TPS
best_clients=$BEST_CLIENTS

# --- boxoffice: the real server, the `hot-ga` scenario, same concurrency. ---
psql -q "$PG/postgres" -c CHECKPOINT
DATABASE_URL="$PG/$ENGINE_DB" BIND_ADDR="127.0.0.1:$PORT" "$BIN" serve >/tmp/boxoffice-bench-server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.2; done
# The generator's own audit queries scan every row of the run: not slow statements worth a
# warning here.
DATABASE_URL="$PG/$ENGINE_DB" SLOW_STATEMENT_MS=60000 "$BIN" loadtest --target "http://127.0.0.1:$PORT" --scenario hot-ga \
  --concurrency "$CONCURRENCY" --duration "$SECONDS_PER_RUN" --server-pid "$SERVER" --json > /tmp/boxoffice-bench.json
engine_tps=$(python3 -c 'import json; print(int(json.load(open("/tmp/boxoffice-bench.json"))["holds"]["okPerSecond"]))')
p50=$(python3 -c 'import json; print(json.load(open("/tmp/boxoffice-bench.json"))["holds"]["p50Ms"])')
p99=$(python3 -c 'import json; print(json.load(open("/tmp/boxoffice-bench.json"))["holds"]["p99Ms"])')
passed=$(python3 -c 'import json; print(json.load(open("/tmp/boxoffice-bench.json"))["passed"])')
kill -TERM $SERVER; wait $SERVER 2>/dev/null || true
trap - EXIT

echo "boxoffice: $CONCURRENCY clients → $engine_tps holds/s (p50 $p50 ms, p99 $p99 ms), checks passed: $passed"
python3 -c "print(f'ratio: {$engine_tps / max($best_tps, 1):.1f}x the baseline at its best ($best_clients clients, $best_tps holds/s)')"
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $BASELINE_DB WITH (FORCE)" -c "DROP DATABASE IF EXISTS $ENGINE_DB WITH (FORCE)" >/dev/null
