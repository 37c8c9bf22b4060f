#!/usr/bin/env bash
# HTTP load test on loopback: seeds users with 3 credentials each, then measures
# `GET /users/me/broker-credentials` and a `PUT` of one credential with wrk for a fixed duration,
# on SQLite and on PostgreSQL, and the same lookup issued straight to PostgreSQL with pgbench.
# Prints requests/s and p50/p99 per backend. Every loop is bounded in time; only 127.0.0.1 is hit.
#
# Usage: scripts/bench/run.sh [duration-seconds=15] [connections=64] [users=200]
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-15}
connections=${2:-64}
users=${3:-200}
port=18700
admin=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
here=scripts/bench
work=$(mktemp -d)
trap 'kill ${server:-0} 2>/dev/null || true; rm -rf "$work"' EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p user-service
bin=target/release/user-service

export BROKER_CREDENTIALS_ENCRYPTION_KEY=$($bin keys generate)
export JWT_SECRET=bench-secret-bench-secret-bench-secret
export APP_ENV=production RUN_MIGRATIONS=1 HOST=127.0.0.1 PORT=$port RUST_LOG=warn
export DATABASE_POOL_SIZE=${DATABASE_POOL_SIZE:-16}

seed() {
  : > "$work/tokens.txt"
  for i in $(seq 1 "$users"); do
    token=$($bin users create --email "bench$i@example.com" --print-token | tail -n 1)
    echo "$token" >> "$work/tokens.txt"
  done
  # 3 credentials per user, through the API (so they are really encrypted and bound).
  while read -r token; do
    curl -sf -o /dev/null -X PUT "http://127.0.0.1:$port/users/me/broker-credentials" \
      -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
      -d '{"credentials":[{"broker":"binance","api_key":"AKIAIOSFODNN7EXAMPLE","api_secret":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},{"broker":"kraken","api_key":"kraken-key-0123456789","api_secret":"a3Jha2VuLXNlY3JldA=="},{"broker":"ibkr","api_key":"IBKR-USER","api_secret":"IBKR-SECRET-0001"}]}'
  done < "$work/tokens.txt"
}

start() {
  $bin serve > "$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && return 0
    sleep 0.1
  done
  cat "$work/server.log" >&2
  return 1
}

measure() {
  local backend=$1
  echo "== $backend: GET /users/me/broker-credentials ($connections connections, ${duration}s)"
  TOKENS_FILE="$work/tokens.txt" wrk -t2 -c"$connections" -d"${duration}s" -s "$here/tokens.lua" "http://127.0.0.1:$port" | grep RESULT
  echo "== $backend: PUT one credential ($connections connections, ${duration}s)"
  TOKENS_FILE="$work/tokens.txt" PUT_BODY=1 wrk -t2 -c"$connections" -d"${duration}s" -s "$here/tokens.lua" "http://127.0.0.1:$port" | grep RESULT
  echo "== $backend: idle RSS after load: $(awk '/VmRSS/ {print $2 " kB"}' /proc/$server/status)"
}

# SQLite
export DATABASE_URL="sqlite://$work/bench.db"
start
echo "== sqlite: idle RSS after start: $(awk '/VmRSS/ {print $2 " kB"}' /proc/$server/status)"
seed
measure sqlite
kill "$server"; wait "$server" 2>/dev/null || true

# PostgreSQL
db="us_bench_$$"
psql "$admin" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
export DATABASE_URL="${admin%/*}/$db"
start
echo "== postgres: idle RSS after start: $(awk '/VmRSS/ {print $2 " kB"}' /proc/$server/status)"
seed
measure postgres
kill "$server"; wait "$server" 2>/dev/null || true
echo "== postgres direct: the same lookup with pgbench ($connections clients, ${duration}s)"
pgbench -n -c "$connections" -j 2 -T "$duration" -D users="$users" -f "$here/select.sql" "$DATABASE_URL" 2>/dev/null \
  | grep -E "^(tps|latency average)"
psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
