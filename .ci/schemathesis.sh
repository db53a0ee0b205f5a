#!/usr/bin/env bash
# Hostile input: schemathesis generates requests from /openapi.json (examples and fuzzing,
# a bounded number per operation) against the real server with a valid organizer token,
# and fails on any server error or any response that breaks the documented schema.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore schemathesis==4.32.5
# Ask cargo where it put the binary: CARGO_TARGET_DIR, a custom profile or a workspace
# target directory elsewhere all move it.
BIN=$(cargo build --quiet --bin boxoffice --message-format=json \
  | python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "boxoffice":
        print(m["executable"])')
test -x "$BIN"
DB="boxoffice_schemathesis_$$"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" JWT_SECRET="schemathesis-$$-secret-secret-secret" RUST_LOG=warn
"$BIN" seed-demo >/dev/null
BIND_ADDR="127.0.0.1:$PORT" "$BIN" serve >"/tmp/$DB.log" 2>&1 &
SERVER=$!
cleanup() {
  kill -TERM "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.1; done
TOKEN=$(curl -fs -X POST "http://127.0.0.1:$PORT/auth/login" -H 'content-type: application/json' \
  -d '{"email":"organizer@example.com","password":"organizer-password"}' \
  | python3 -c 'import sys, json; print(json.load(sys.stdin)["data"]["accessToken"])')
schemathesis run "http://127.0.0.1:$PORT/openapi.json" -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,response_schema_conformance --phases examples,fuzzing \
  --max-examples 15 --no-color
