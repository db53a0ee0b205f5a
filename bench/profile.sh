#!/usr/bin/env bash
# Where a hold's time goes: the whole machine sampled by perf while wrk places holds as
# bench/wrk.sh's nominal run does, split by process (server, PostgreSQL, wrk, idle) and the
# server's samples by part of the hold's path (HTTP, auth, engine, flush, runtime, kernel).
#
#   bench/profile.sh [connections] [seconds]        (defaults: 256, 10; 3 s of warm-up first)
#   BIN=/path/to/other/boxoffice bench/profile.sh   (profile another build the same way)
#   PERF_HZ=99                                      (samples a second per CPU; more slow the run)
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
  cargo build --release --quiet --bin boxoffice
  BIN=target/release/boxoffice
fi

URL="http://127.0.0.1:$PORT"
serve_fresh "$DB"
wrk_scenario
COUNTS="$WORK/warm.counts" wrk -t2 -c"$CONNECTIONS" -d3s -s bench/holds.lua "$URL" >/dev/null
# DWARF call graphs: release builds keep no frame pointers, but do keep unwind tables.
perf record -q -a -F "${PERF_HZ:-99}" --call-graph dwarf,16384 -o "$WORK/perf.data" -- sleep "$SECONDS_PER_RUN" 2>/dev/null &
PERF=$!
COUNTS="$WORK/run.counts" wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" -s bench/holds.lua "$URL" >"$WORK/run.wrk"
wait "$PERF"
OK=$(awk '$1 == 201 {print $2}' "$WORK/run.counts")
echo "$((${OK:-0} / SECONDS_PER_RUN)) holds/s while sampled ($CONNECTIONS connections, ${SECONDS_PER_RUN} s)"
perf script -i "$WORK/perf.data" 2>/dev/null >"$WORK/perf.txt"
python3 bench/profile.py "$WORK/perf.txt" "$FOLDED"
