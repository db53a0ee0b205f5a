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
CONCURRENCY="${1:-256}"
SECONDS_PER_RUN="${2:-20}"
PG="postgres://postgres@127.0.0.1:5432"
BASELINE_DB="boxoffice_bench_baseline"
ENGINE_DB="boxoffice_bench_engine"
PORT="${BENCH_PORT:-3997}"
export JWT_SECRET="bench-secret-$(date +%s)-bench-secret-bench"
export RUST_LOG=warn

cargo build --release --quiet --bin boxoffice
BIN=target/release/boxoffice

psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $BASELINE_DB WITH (FORCE)" -c "DROP DATABASE IF EXISTS $ENGINE_DB WITH (FORCE)" >/dev/null

# --- The baseline: same schema, one GENERAL section far larger than the run can sell. ---
DATABASE_URL="$PG/$BASELINE_DB" "$BIN" migrate >/dev/null
psql -q "$PG/$BASELINE_DB" >/dev/null <<'SQL'
INSERT INTO users (email, password_hash, role) VALUES ('organizer@bench', 'x', 'ORGANIZER');
INSERT INTO users (email, password_hash) SELECT 'buyer' || g || '@bench', 'x' FROM generate_series(1, 2000) g;
INSERT INTO events (event_name, event_date, created_by, sale_start_time, status, max_tickets_per_user, available_seats)
SELECT 'Baseline', now() + interval '30 days', id, now(), 'ON_SALE', 1000, 1000000 FROM users WHERE role = 'ORGANIZER';
INSERT INTO event_sections (event_id, name, kind, capacity, price_cents, available)
SELECT id, 'Floor', 'GENERAL', 1000000, 5000, 1000000 FROM events;
SQL
read -r EVENT SECTION FIRST_USER < <(psql -At -F ' ' "$PG/$BASELINE_DB" -c \
  "SELECT e.id, s.id, (SELECT min(id) FROM users WHERE role = 'CUSTOMER') FROM events e JOIN event_sections s ON s.event_id = e.id")

best_tps=0
best_clients=0
# PostgreSQL allows 100 connections here, so the baseline is tried up to 64 clients (a
# row-lock design gets slower, not faster, with more clients anyway).
for clients in 1 4 8 16 32 64; do
  # Each run starts from a clean checkpoint, so no run pays for another's dirty pages.
  psql -q "$PG/postgres" -c CHECKPOINT
  out=$(pgbench -n -h 127.0.0.1 -U postgres -c "$clients" -j 2 -T "$SECONDS_PER_RUN" \
        -D event="$EVENT" -D section="$SECTION" -D first_user="$FIRST_USER" -D users=2000 \
        -f bench/baseline-hold.sql "$BASELINE_DB" 2>&1)
  tps=$(echo "$out" | awk '/^tps/ {print int($3)}')
  if [ -z "$tps" ]; then echo "baseline: $clients clients failed: $out"; continue; fi
  lat=$(echo "$out" | awk '/latency average/ {print $4}')
  echo "baseline: $clients clients → $tps holds/s (average latency $lat ms)"
  if [ "$tps" -gt "$best_tps" ]; then best_tps=$tps; best_clients=$clients; fi
done

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
