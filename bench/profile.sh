#!/usr/bin/env bash
# Where a hold's time goes: the whole machine sampled by perf while wrk places holds as
# bench/wrk.sh's nominal run does, split by process (server, PostgreSQL, wrk, idle) and the
# server's samples by part of the hold's path (HTTP, auth, engine, flush, runtime, kernel).
#
#   bench/profile.sh [connections] [seconds]        (defaults: 256, 10; 3 s of warm-up first)
#   BIN=/path/to/other/boxoffice bench/profile.sh   (profile another build the same way)
#   PERF_HZ=99                                      (samples a second per CPU; more slow the run)
#   TARGET=ceiling bench/profile.sh                 (profile examples/ceiling.rs, the design's
#                                                    limit, the same way, to compare with)
#
# Writes the server's folded stacks to $FOLDED (default target/profile.folded), which
# `inferno-flamegraph < target/profile.folded > flame.svg` draws. Needs perf (Debian's
# linux-perf), wrk, PostgreSQL on 127.0.0.1:5432. Loopback only; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
CONNECTIONS="${1:-256}"
SECONDS_PER_RUN="${2:-10}"
PORT="${BENCH_PORT:-3997}"
FOLDED="${FOLDED:-target/profile.folded}"
DB=boxoffice_bench_profile
WORK=$(mktemp -d)
export JWT_SECRET="bench-secret-$(date +%s)-bench-secret-bench" RUST_LOG=warn
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin boxoffice --example ceiling
  BIN=target/release/boxoffice
fi

URL="http://127.0.0.1:$PORT"
serve_fresh "$DB"
wrk_scenario
PROFILED=$SERVER
if [ "${TARGET:-}" = ceiling ]; then
  # The engine made the scenario (buyers, tokens, the event); the prototype answers it on
  # the next port, in the same database, while the engine sleeps.
  kill -STOP "$SERVER"
  URL="http://127.0.0.1:$((PORT + 1))"
  DATABASE_URL="$PG/$DB" BIND_ADDR="${URL#http://}" "${CEILING_BIN:-target/release/examples/ceiling}" >"$WORK/ceiling.log" 2>&1 &
  PROFILED=$!
  # Resumed before the exit trap stops it (a stopped process would not see SIGTERM).
  trap 'kill -CONT "$SERVER" 2>/dev/null || true; kill -TERM "$SERVER" "$PROFILED" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
        psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true
        rm -rf "$WORK"' EXIT
  for _ in $(seq 1 100); do curl -s -o /dev/null "$URL/" && break; sleep 0.1; done
fi
# The profiled process's CPU time (user + system, in clock ticks) from /proc.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PROFILED/stat"; }
COUNTS="$WORK/warm.counts" wrk -t2 -c"$CONNECTIONS" -d3s -s bench/holds.lua "$URL" >/dev/null
# DWARF call graphs: release builds keep no frame pointers, but do keep unwind tables.
perf record -q -a -F "${PERF_HZ:-99}" --call-graph dwarf,16384 -o "$WORK/perf.data" -- sleep "$SECONDS_PER_RUN" 2>/dev/null &
PERF=$!
TICKS_BEFORE=$(cpu_ticks)
COUNTS="$WORK/run.counts" wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" -s bench/holds.lua "$URL" >"$WORK/run.wrk"
TICKS_AFTER=$(cpu_ticks)
wait "$PERF"
OK=$(awk '$1 == 201 {print $2}' "$WORK/run.counts")
echo "$((${OK:-0} / SECONDS_PER_RUN)) holds/s while sampled ($CONNECTIONS connections, ${SECONDS_PER_RUN} s)"
# Sampling slows the run, so CPU per hold is the comparable figure, not holds/s.
python3 -c "import sys; t, ok, hz = map(int, sys.argv[1:]); print(f'server CPU per hold: {t / hz * 1e6 / max(ok, 1):.1f} µs')" \
  "$((TICKS_AFTER - TICKS_BEFORE))" "${OK:-0}" "$(getconf CLK_TCK)"
perf script -i "$WORK/perf.data" 2>/dev/null >"$WORK/perf.txt"
if [ "${TARGET:-}" = ceiling ]; then
  # The prototype's own code counts as the handler's, as `boxoffice::` does for the engine.
  sed -i 's/ceiling::/boxoffice::/g' "$WORK/perf.txt"
fi
python3 bench/profile.py "$WORK/perf.txt" "$FOLDED"
