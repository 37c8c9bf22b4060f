#!/usr/bin/env bash
# Runs schemathesis (every check, fixed seed, bounded time) against a real server started on a
# throwaway SQLite database, with an operator's token, so that the served /openapi.json stays
# exact. Usage: scripts/schemathesis/run.sh [max-seconds]   (default 150)
# Needs: the debug binary (cargo build -p user-service) and `schemathesis` (pip install
# schemathesis; .ci/run installs it).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/dev/lib.sh
source "$root/scripts/dev/lib.sh"
max_time=${1:-150}
bin=${USER_SERVICE_BIN:-$root/target/debug/user-service}
port=${SCHEMATHESIS_PORT:-18911}
work=$(mktemp -d)
server=
cleanup() {
  [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export APP_ENV=local USER_SERVICE_DATA_DIR=$work/data PORT=$port HOST=127.0.0.1 RUST_LOG=warn
"$bin" serve >"$work/server.log" 2>&1 &
server=$!
wait_healthy "http://127.0.0.1:$port" "$work/server.log"
token=$("$bin" users create --email schemathesis-operator@example.com --operator --print-token | tail -n 1)
# `DELETE /users/me` would delete the operator the run signs in with, turning every later
# request into a 403; it is covered by the HTTP tests instead.
run_schemathesis() {
  schemathesis --config-file "$root/scripts/schemathesis/schemathesis.toml" --no-color run \
    "http://127.0.0.1:$port/openapi.json" \
    --checks all --seed 1 --max-examples 30 --max-time "$max_time" --workers 2 \
    --exclude-operation-id delete_me \
    --header "Authorization: Bearer $token" 2>&1 | tee "$work/schemathesis.out"
  return "${PIPESTATUS[0]}"
}
status=0
run_schemathesis || status=$?
# A crash of schemathesis itself (its ERRORS section, e.g. hypothesis' "Inconsistent results"),
# with no check failing, says nothing about the service: run once more. A failed check (FAILURES)
# never gets a second chance.
if [[ $status -ne 0 ]] && ! grep -q '=== FAILURES ===' "$work/schemathesis.out" \
  && grep -q '=== ERRORS ===' "$work/schemathesis.out"; then
  echo "schemathesis: the tool itself errored (no check failed); running it once more" >&2
  # The first run may have deleted its operator (DELETE /users/{user_id}): sign in a new one.
  token=$("$bin" users create --email schemathesis-operator-2@example.com --operator --print-token | tail -n 1)
  status=0
  run_schemathesis || status=$?
fi
if grep -q "panicked" "$work/server.log"; then
  echo "schemathesis: the server panicked:" >&2
  grep -A3 "panicked" "$work/server.log" >&2
  status=1
fi
exit "$status"
