#!/usr/bin/env bash
# Measured from outside: wrk (a load generator in C, Debian's package) against a release
# build, next to the row-lock baseline in the same run, read from wrk and from the server's
# own latency histograms, then audited in PostgreSQL.
#
#   bench/wrk.sh [connections] [seconds]        (defaults: 256, 15; 3 s of warm-up first)
#   BIN=/path/to/other/boxoffice bench/wrk.sh   (measure another build the same way)
#   SKIP_CEILING=1 bench/wrk.sh                 (leave out the design's-limit run)
#
# 1. baseline: a row-lock transaction per hold under pgbench, best of 8–64 clients;
# 2. holds: GENERAL holds of 1 ticket, 2,048 buyers round robin (bench/holds.lua);
# 3. reads: GET /events/{id}/inventory against GET /health/live, 64 connections each;
# 4. overload: 4,096 connections that ignore Retry-After against a hot event of its own;
# 5. the design's limit: the same holds against examples/ceiling.rs (the design with nothing
#    else: JWT check, one deciding task, UNNEST group commit), right after the engine's run;
# then `boxoffice audit` checks each event's invariants and that every 201 is stored.
# Needs: PostgreSQL on 127.0.0.1:5432, pgbench, wrk. Loopback only; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
CONNECTIONS="${1:-256}"
SECONDS_PER_RUN="${2:-15}"
OVERLOAD_CONNECTIONS="${OVERLOAD_CONNECTIONS:-4096}"
PORT="${BENCH_PORT:-3996}"
DB=boxoffice_bench_wrk
WORK=$(mktemp -d)
export JWT_SECRET="bench-secret-$(date +%s)-bench-secret-bench" RUST_LOG=warn
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }

if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin boxoffice --example ceiling
  BIN=target/release/boxoffice
fi
CEILING_BIN="${CEILING_BIN:-target/release/examples/ceiling}"
[ -n "${SKIP_CEILING:-}" ] || [ -x "$CEILING_BIN" ] || cargo build --release --quiet --example ceiling

if [ "${SKIP_BASELINE:-}" = "" ]; then
  BASELINE_CLIENTS="8 16 32 64" baseline boxoffice_bench_wrk_baseline "$SECONDS_PER_RUN"
fi

URL="http://127.0.0.1:$PORT"
serve_fresh "$DB"
# HOLD_TTL_SECONDS_BENCH=10: every hold is abandoned (wrk never confirms) and expires.
wrk_scenario ${HOLD_TTL_SECONDS_BENCH:+--hold-ttl-seconds "$HOLD_TTL_SECONDS_BENCH"}
EVENT=$(head -1 "$WORK/scenario.txt")
rss() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$SERVER/status"; }
scrape() { curl -fs "$URL/metrics" >"$1"; }
ROUTE='/events/{id}/reservations'

# One measured run of holds: warm-up, then $2 s with $1 connections. Prints
# "holds/s wrk_p50 wrk_p99 server_count server_p50 server_p99 shed/s shed_p99 rss_before rss_max".
holds_run() {
  local connections="$1" seconds="$2" name="$3"
  COUNTS="$WORK/$name.warm.counts" wrk -t2 -c"$connections" -d3s -s bench/holds.lua "$URL" >/dev/null
  local before="$WORK/$name.before" after="$WORK/$name.after" rss_before rss_max=0
  rss_before=$(rss)
  scrape "$before"
  ( while kill -0 "$SERVER" 2>/dev/null; do rss >>"$WORK/$name.rss"; echo >>"$WORK/$name.rss"; sleep 0.5; done ) &
  local sampler=$!
  COUNTS="$WORK/$name.counts" wrk -t2 -c"$connections" -d"${seconds}s" --latency -s bench/holds.lua "$URL" >"$WORK/$name.wrk"
  kill "$sampler" 2>/dev/null || true
  scrape "$after"
  rss_max=$(sort -n "$WORK/$name.rss" | tail -1)
  local ok shed
  ok=$(awk '$1 == 201 {print $2}' "$WORK/$name.counts"); ok=${ok:-0}
  shed=$(awk '$1 == 503 {print $2}' "$WORK/$name.counts"); shed=${shed:-0}
  local wrk_p50 wrk_p99
  wrk_p50=$(awk '$1 == "50%" {print $2}' "$WORK/$name.wrk")
  wrk_p99=$(awk '$1 == "99%" {print $2}' "$WORK/$name.wrk")
  read -r s_count s_p50 s_p99 < <(python3 bench/histogram.py "$before" "$after" "$ROUTE" 201)
  read -r _ _ shed_p99 < <(python3 bench/histogram.py "$before" "$after" "$ROUTE" 503)
  echo "$((ok / seconds)) $wrk_p50 $wrk_p99 $s_count $s_p50 $s_p99 $((shed / seconds)) $shed_p99 $rss_before $rss_max"
  # To stderr: `read` takes the first line of stdout only, and would drop these.
  awk -v name="$name" '$1 != 201 && $1 != 503 {print name ": " $2 " answers with status " $1}' \
    "$WORK/$name.warm.counts" "$WORK/$name.counts" >&2
}

read -r H_TPS H_P50 H_P99 H_COUNT H_SP50 H_SP99 _ _ H_RSS0 H_RSS1 < <(holds_run "$CONNECTIONS" "$SECONDS_PER_RUN" nominal)

# The design's limit, measured the same way right after: same buyers, same tokens, same
# database cluster (its own table). Its answers are counted apart from the engine's audit.
C_TPS=""
if [ -z "${SKIP_CEILING:-}" ]; then
  CEILING_URL="http://127.0.0.1:$((PORT + 1))"
  DATABASE_URL="$PG/$DB" BIND_ADDR="${CEILING_URL#http://}" "$CEILING_BIN" >"$WORK/ceiling.log" 2>&1 &
  CEILING=$!
  ALSO_STOP=$CEILING
  for _ in $(seq 1 100); do curl -s -o /dev/null "$CEILING_URL/" && break; sleep 0.1; done
  mkdir -p "$WORK/ceiling"
  COUNTS="$WORK/ceiling/warm" wrk -t2 -c"$CONNECTIONS" -d3s -s bench/holds.lua "$CEILING_URL" >/dev/null
  COUNTS="$WORK/ceiling/counts" wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" --latency -s bench/holds.lua "$CEILING_URL" >"$WORK/ceiling/wrk"
  kill "$CEILING"; wait "$CEILING" 2>/dev/null || true
  C_TPS=$(( $(awk '$1 == 201 {print $2}' "$WORK/ceiling/counts") / SECONDS_PER_RUN ))
  C_P50=$(awk '$1 == "50%" {print $2}' "$WORK/ceiling/wrk")
  C_P99=$(awk '$1 == "99%" {print $2}' "$WORK/ceiling/wrk")
  awk '$1 != 201 {print "ceiling: " $2 " answers with status " $1}' "$WORK/ceiling/counts"
fi

# Reads, 64 connections, the cheapest route first.
read_rate() {
  wrk -t2 -c64 -d3s "$URL$1" >/dev/null
  wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" "$URL$1" | awk '/Requests\/sec/ {print int($2)}'
}
HEALTH=$(read_rate /health/live)
INVENTORY=$(read_rate "/events/$EVENT/inventory")

# The overload runs on an event of its own, with buyers of its own: a GENERAL section holds
# at most 1,000,000 tickets (the engine's bound), and on a fast host the nominal run and the
# overload together sold more than that — the overload's last seconds would have measured a
# sold-out event.
wrk_scenario ${HOLD_TTL_SECONDS_BENCH:+--hold-ttl-seconds "$HOLD_TTL_SECONDS_BENCH"}
OVERLOAD_EVENT=$(head -1 "$WORK/scenario.txt")
read -r O_TPS O_P50 O_P99 O_COUNT O_SP50 O_SP99 O_SHED O_SHED_P99 O_RSS0 O_RSS1 < <(holds_run "$OVERLOAD_CONNECTIONS" "$SECONDS_PER_RUN" overload)

# Every 201 is a stored hold, and each event keeps its invariants.
sleep 1
audit() {
  local event="$1" name="$2" stored acked
  DATABASE_URL="$PG/$DB" "$BIN" audit --event "$event" | tee "$WORK/audit.$name.txt"
  stored=$(awk '{print $3; exit}' "$WORK/audit.$name.txt")
  acked=$(cat "$WORK/$name.warm.counts" "$WORK/$name.counts" | awk '$1 == 201 {s += $2} END {print s + 0}')
  echo "$name: acknowledged 201s (measured run and warm-up): $acked; holds stored: $stored"
  [ "$stored" -ge "$acked" ] || { echo "CHECK FAILED: fewer holds stored than acknowledged" >&2; exit 1; }
}
audit "$EVENT" nominal
audit "$OVERLOAD_EVENT" overload

echo
echo "| run | holds/s | wrk p50 | wrk p99 | server p99 (201) | ratio |"
echo "|---|---|---|---|---|---|"
if [ -n "${BEST_TPS:-}" ]; then
  echo "| row-lock baseline (pgbench, best: $BEST_CLIENTS clients) | $BEST_TPS | — | — | — | 1.0× |"
fi
ratio() { python3 -c "import sys; b = int(sys.argv[2]); print(f'{int(sys.argv[1]) / b:.1f}×' if b else '—')" "$1" "${BEST_TPS:-0}"; }
echo "| boxoffice, $CONNECTIONS connections | $H_TPS | $H_P50 | $H_P99 | $H_SP99 ms | $(ratio "$H_TPS") |"
if [ -n "$C_TPS" ]; then
  echo "| the design's limit (examples/ceiling.rs), $CONNECTIONS connections | $C_TPS | $C_P50 | $C_P99 | — | $(ratio "$C_TPS") |"
fi
echo "| boxoffice, $OVERLOAD_CONNECTIONS connections (overload) | $O_TPS | $O_P50 | $O_P99 | $O_SP99 ms | $(ratio "$O_TPS") |"
python3 - "$H_TPS" "$O_TPS" "$H_SP99" "$O_SP99" "$O_SHED" "$O_SHED_P99" "$HEALTH" "$INVENTORY" "$H_RSS0" "$H_RSS1" "$O_RSS0" "$O_RSS1" <<'EOF'
import sys
h, o, hp, op, shed, shedp, health, inv, r0, r1, r2, r3 = sys.argv[1:]
print(f"overload: goodput {int(o) / max(int(h), 1):.2f}× nominal, admitted p99 {float(op) / float(hp):.2f}× nominal, "
      f"{shed} shed/s answered 503 with p99 {shedp} ms")
print(f"reads: inventory {inv}/s vs health {health}/s = {int(inv) / max(int(health), 1):.2f}")
print(f"server memory: nominal {r0} → {r1} MiB max, overload {r2} → {r3} MiB max")
EOF
if [ -n "$C_TPS" ]; then
  python3 -c "import sys; print(f'the design\'s limit: boxoffice sold {int(sys.argv[1]) / max(int(sys.argv[2]), 1):.2f}× the holds/s of examples/ceiling.rs, same run')" "$H_TPS" "$C_TPS"
fi
