#!/usr/bin/env bash
# The performance guide's Artillery scenario (load-test.yml, unmodified: 21,600 virtual
# users over 7 minutes, each signing in as test@example.com, listing events and holding 2
# GENERAL tickets of event 123, section 1) against a release build on a fresh database,
# then checked: every answer 2xx, every virtual user completed, and PostgreSQL agreeing
# with what was acknowledged.
#
#   bench/artillery.sh            # needs port 3000 free (the scenario's target), Node.js, npm
#
# Artillery comes from the npm registry into target/artillery (its browser download, for
# Playwright scenarios this one does not use, is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

ARTILLERY_VERSION=2.0.34
DIR=target/artillery
if [ ! -x "$DIR/node_modules/.bin/artillery" ]; then
  mkdir -p "$DIR"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$DIR" --no-audit --no-fund \
    --ignore-scripts --silent "artillery@$ARTILLERY_VERSION" >/dev/null
fi
if curl -s -o /dev/null "http://127.0.0.1:3000/health/live"; then
  echo "port 3000 is taken; load-test.yml targets http://localhost:3000, so stop what runs there" >&2
  exit 1
fi

cargo build --release --quiet --bin boxoffice
BIN=target/release/boxoffice
DB="boxoffice_artillery_$$"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" RUST_LOG=warn
export JWT_SECRET="artillery-$$-secret-secret-secret-secret"
LOG="target/artillery/server.log"
REPORT="target/artillery/report.json"
"$BIN" seed-demo --artillery
BIND_ADDR=127.0.0.1:3000 "$BIN" serve >"$LOG" 2>&1 &
SERVER=$!
cleanup() {
  kill -TERM "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:3000/health/ready >/dev/null && break; sleep 0.1; done

"$DIR/node_modules/.bin/artillery" run --output "$REPORT" load-test.yml

# The verdict, from Artillery's own report and from PostgreSQL.
HELD=$(psql -tA -h 127.0.0.1 -U postgres -d "$DB" -c \
  "SELECT count(*) FROM reservations WHERE event_id = 123 AND section_id = 1 AND quantity = 2")
COUNTS=$(psql -tA -h 127.0.0.1 -U postgres -d "$DB" -c \
  "SELECT available + held + booked = capacity, held FROM event_sections WHERE id = 1")
python3 - "$REPORT" "$HELD" "$COUNTS" <<'EOF'
import json, sys
report, held, counts = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = json.load(open(report))["aggregate"]["counters"]
codes = {k.split(".")[-1]: v for k, v in c.items() if k.startswith("http.codes.")}
errors = {k: v for k, v in c.items() if k.startswith("errors.")}
created, completed, failed = c.get("vusers.created", 0), c.get("vusers.completed", 0), c.get("vusers.failed", 0)
holds = codes.get("201", 0)
balanced, held_tickets = counts.split("|")
print(f"virtual users: {created} created, {completed} completed, {failed} failed")
print(f"answers by status: {dict(sorted(codes.items()))}; errors: {errors or 'none'}")
print(f"PostgreSQL: {held} holds of 2 stored for {holds} acknowledged; {held_tickets} tickets held; counts balanced: {balanced}")
ok = (created == 21600 and completed == created and failed == 0 and not errors
      and all(code.startswith("2") for code in codes) and holds == created
      and held == holds and int(held_tickets) == 2 * holds and balanced == "t")
print("artillery scenario: " + ("PASSED (only 2xx answers)" if ok else "FAILED"))
sys.exit(0 if ok else 1)
EOF
