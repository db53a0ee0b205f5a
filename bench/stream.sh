#!/usr/bin/env bash
# The live stream under a sellout: `loadtest --scenario sellout` without subscribers and with
# N live-stream subscribers following the event, in the order without, with, with, without
# (so that a machine that drifts during the session favours neither), each run on a fresh
# database and a fresh server. Every subscriber must end showing exactly what PostgreSQL
# holds (the load generator checks it and fails otherwise). Prints the first-pass hold
# throughput with and without, their ratio, and the server's memory.
#
#   bench/stream.sh [subscribers] [seats] [buyers]   (defaults: 10,000, 100,000, 256)
#
# Needs: PostgreSQL on 127.0.0.1:5432 (user postgres), a release build (built here), a
# file-descriptor limit above the subscriber count (the generator holds one socket each).
# Traffic goes to loopback only; everything stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SUBSCRIBERS="${1:-10000}"
SEATS="${2:-100000}"
BUYERS="${3:-256}"
DB="boxoffice_bench_stream"
PORT="${BENCH_PORT:-3996}"
OUT="${OUT:-target/bench-stream}"
export JWT_SECRET="bench-secret-$(date +%s)-bench-secret-bench"
export RUST_LOG=warn

cargo build --release --quiet --bin boxoffice
BIN=target/release/boxoffice
mkdir -p "$OUT"
SERVER=
trap 'if [ -n "$SERVER" ]; then kill $SERVER 2>/dev/null || true; fi' EXIT

run() { # $1: label, $2: subscribers
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c CHECKPOINT >/dev/null
  DATABASE_URL="$PG/$DB" BIND_ADDR="127.0.0.1:$PORT" "$BIN" serve >"$OUT/server-$1.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.2; done
  # --keep: the database is dropped whole afterwards, faster than deleting the run's rows.
  DATABASE_URL="$PG/$DB" SLOW_STATEMENT_MS=60000 "$BIN" loadtest --target "http://127.0.0.1:$PORT" \
    --scenario sellout --seats "$SEATS" --concurrency "$BUYERS" --duration 300 --subscribers "$2" \
    --server-pid "$SERVER" --keep --json > "$OUT/$1.json"
  kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true
  SERVER=
  python3 - "$OUT/$1.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f, m, w = r["firstPass"], r.get("serverMemory") or {}, r.get("subscribers")
line = (f"{sys.argv[2]:>10}: first pass {f['holdsPerSecond']:6.0f} holds/s ({f['holds']} holds in {f['seconds']:.1f} s), "
        f"sold out after {r['soldOutAfterSeconds']:.1f} s, {r['booked']} of {r['capacity']} booked; server RSS ")
if m.get("beforeSubscribersMib") is not None:
    line += f"{m['beforeSubscribersMib']:.0f} MiB before the subscribers, "
line += f"{m.get('startMib', 0):.0f} MiB at start, {m.get('maxMib', 0):.0f} MiB max"
if w:
    line += (f"; {w['subscribers']} subscribers (connected in {w['connectSeconds']:.1f} s), "
             f"{w['messagesPerSubscriber']:.0f} messages each, {w['bytes'] / 2**20:.0f} MiB read in all, "
             f"{w['reconnects']} resumed after a drop, {w['matching']} of {w['subscribers']} equal to PostgreSQL")
print(line + f"; checks {'passed' if r['passed'] else 'FAILED'}")
PY
}

run without-1 0
run with-1 "$SUBSCRIBERS"
run with-2 "$SUBSCRIBERS"
run without-2 0
psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null

python3 - "$OUT" <<'PY'
import json, sys
rate = lambda n: json.load(open(f"{sys.argv[1]}/{n}.json"))["firstPass"]["holdsPerSecond"]
without = (rate("without-1") + rate("without-2")) / 2
with_ = (rate("with-1") + rate("with-2")) / 2
print(f"first-pass hold throughput with subscribers / without: {with_ / without:.2f} "
      f"({with_:.0f} vs {without:.0f} holds/s, mean of two runs each)")
PY
