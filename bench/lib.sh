# Shared by the benchmarks (sourced). Everything talks to loopback only.

PG="${PG:-postgres://postgres@127.0.0.1:5432}"

# The conventional design's best: a row-lock transaction per hold (bench/baseline-hold.sql)
# under pgbench at 1–64 clients against boxoffice's own schema, each run from a clean
# checkpoint. Sets BEST_TPS and BEST_CLIENTS. $1: database name, $2: seconds per run.
baseline() {
  local db="$1" seconds="$2"
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  DATABASE_URL="$PG/$db" "$BIN" migrate >/dev/null
  psql -q "$PG/$db" >/dev/null <<'SQL'
INSERT INTO users (email, password_hash, role) VALUES ('organizer@bench', 'x', 'ORGANIZER');
INSERT INTO users (email, password_hash) SELECT 'buyer' || g || '@bench', 'x' FROM generate_series(1, 2000) g;
INSERT INTO events (event_name, event_date, created_by, sale_start_time, status, max_tickets_per_user, available_seats)
SELECT 'Baseline', now() + interval '30 days', id, now(), 'ON_SALE', 1000, 1000000 FROM users WHERE role = 'ORGANIZER';
INSERT INTO event_sections (event_id, name, kind, capacity, price_cents, available)
SELECT id, 'Floor', 'GENERAL', 1000000, 5000, 1000000 FROM events;
SQL
  local event section first_user
  read -r event section first_user < <(psql -At -F ' ' "$PG/$db" -c \
    "SELECT e.id, s.id, (SELECT min(id) FROM users WHERE role = 'CUSTOMER') FROM events e JOIN event_sections s ON s.event_id = e.id")
  BEST_TPS=0
  BEST_CLIENTS=0
  # PostgreSQL allows 100 connections here, so the baseline is tried up to 64 clients (a
  # row-lock design gets slower, not faster, with more clients anyway).
  for clients in ${BASELINE_CLIENTS:-1 4 8 16 32 64}; do
    psql -q "$PG/postgres" -c CHECKPOINT
    local out tps lat
    out=$(pgbench -n -h 127.0.0.1 -U postgres -c "$clients" -j 2 -T "$seconds" \
          -D event="$event" -D section="$section" -D first_user="$first_user" -D users=2000 \
          -f bench/baseline-hold.sql "$db" 2>&1)
    tps=$(echo "$out" | awk '/^tps/ {print int($3)}')
    if [ -z "$tps" ]; then echo "baseline: $clients clients failed: $out"; continue; fi
    lat=$(echo "$out" | awk '/latency average/ {print $4}')
    echo "baseline: $clients clients → $tps holds/s (average latency $lat ms)"
    if [ "$tps" -gt "$BEST_TPS" ]; then BEST_TPS=$tps; BEST_CLIENTS=$clients; fi
  done
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
}

# Starts the release build on a fresh database $1 at $URL, stopped (and the database and
# $WORK removed) when the script exits, with any other pids in ALSO_STOP; waits until it is
# ready. Sets SERVER.
serve_fresh() {
  DB="$1"
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
  psql -q "$PG/postgres" -c CHECKPOINT
  DATABASE_URL="$PG/$DB" BIND_ADDR="${URL#http://}" "$BIN" serve >"$WORK/server.log" 2>&1 &
  SERVER=$!
  trap 'kill -TERM "$SERVER" ${ALSO_STOP:-} 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true
        psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true
        rm -rf "$WORK"' EXIT
  for _ in $(seq 1 100); do curl -fs "$URL/health/ready" >/dev/null && break; sleep 0.1; done
}

# A hot GENERAL event with 2,048 buyers for bench/holds.lua: writes $WORK/scenario.txt
# (event, section, then one token a line) and exports SCENARIO. Extra loadtest flags in "$@".
wrk_scenario() {
  DATABASE_URL="$PG/$DB" "$BIN" loadtest --target "$URL" --scenario hot-ga --buyers 2048 \
    "$@" --prepare-only "$WORK/scenario.json" 2>/dev/null
  python3 - "$WORK/scenario.json" "$WORK/scenario.txt" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
open(sys.argv[2], "w").write("\n".join([str(s["eventId"]), str(s["sectionId"])] + s["tokens"]) + "\n")
PY
  export SCENARIO="$WORK/scenario.txt"
}
