#!/usr/bin/env bash
# The open loop at twice the capacity: the nominal closed-loop run (`hot-ga`, 256 buyers)
# measures what the server takes, then the open loop schedules twice that many holds a second
# over a fixed pool of connections, each request timed from when it was due. Reports how
# much of its schedule the generator sent, and what the server made of it, as ratios to the
# nominal run of the same invocation. Each part on a fresh database and server.
#
#   bench/openloop.sh [seconds] [connections]     (defaults: 10 s, a pool of 4,096)
#   FACTOR=2                                      (the schedule, as a multiple of the nominal)
#
# The open loop's connections carry independent buyers one after another, as a proxy's do,
# so its server runs with PACE_MAX_MS=0 (as behind a proxy; README, "Configuration").
# Needs PostgreSQL on 127.0.0.1:5432. Loopback only; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
SECONDS_PER_RUN="${1:-10}"
POOL="${2:-4096}"
FACTOR="${FACTOR:-2}"
PORT="${BENCH_PORT:-3997}"
URL="http://127.0.0.1:$PORT"
WORK=$(mktemp -d)
export JWT_SECRET="bench-secret-$(date +%s)-bench-secret-bench" RUST_LOG=warn
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin boxoffice
  BIN=target/release/boxoffice
fi

# One part: a fresh database and server, then the generator with "$@"; the JSON report to
# $WORK/$name.json.
part() {
  local name="$1"; shift
  serve_fresh "boxoffice_bench_openloop_$name"
  DATABASE_URL="$PG/$DB" SLOW_STATEMENT_MS=60000 "$BIN" loadtest --target "$URL" --scenario hot-ga \
    --duration "$SECONDS_PER_RUN" --warmup 3 --server-pid "$SERVER" --json "$@" >"$WORK/$name.json"
  kill -TERM "$SERVER"; wait "$SERVER" || true
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
}

part nominal --concurrency 256
RATE=$(python3 -c "import json,sys; print(int(json.load(open(sys.argv[1]))['holds']['okPerSecond'] * float(sys.argv[2])))" \
  "$WORK/nominal.json" "$FACTOR")
PACE_MAX_MS=0 part open --rate "$RATE" --max-in-flight "$POOL"

python3 - "$WORK/nominal.json" "$WORK/open.json" "$FACTOR" "$POOL" <<'PY'
import json, sys
nominal, open_ = (json.load(open(p)) for p in sys.argv[1:3])
factor, pool = float(sys.argv[3]), int(sys.argv[4])
n, o = nominal["holds"], open_["holds"]
scheduled, skipped = open_["generatorScheduled"], open_["generatorSkipped"]
sent = scheduled - skipped
print(f"nominal (closed loop, 256 buyers): {n['okPerSecond']:,.0f} holds/s, p99 {n['p99Ms']:.1f} ms")
print(f"open loop, {open_['rate']:,} holds/s scheduled ({factor:g}x nominal), pool of {pool:,} connections:")
print(f"  sent {sent:,} of {scheduled:,} scheduled after the warm-up: {sent / max(scheduled, 1):.1%}"
      f" = {sent / open_['seconds'] / n['okPerSecond']:.2f}x the nominal throughput offered")
print(f"  answered 201: {o['okPerSecond']:,.0f}/s ({o['okPerSecond'] / n['okPerSecond']:.2f}x nominal goodput),"
      f" p50 {o['p50Ms']:.1f} ms, p99 {o['p99Ms']:.1f} ms from the scheduled time")
print(f"  answered 503: {o['shed'] / open_['seconds']:,.0f}/s, p99 {o['shedP99Ms']:.1f} ms from the scheduled time;"
      f" errors {o['errors']}")
for name, r in (("nominal", nominal), ("open loop", open_)):
    print(f"audit ({name}): {len(r['violations'])} violations, {r['missingHolds']} acknowledged holds missing"
          f" -> {'PASSED' if r['passed'] else 'FAILED'}")
if not (nominal["passed"] and open_["passed"]):
    sys.exit(1)
PY
