#!/usr/bin/env bash
# Which SQL the service sends for one `GET /users/me/broker-credentials` and one `PUT` of one
# credential, beside what the pgbench scripts of the HTTP benchmark send, so that the ratio
# "service / pgbench" keeps comparing the same database work.
#
# Runs the release binary against a throwaway PostgreSQL database whose sessions log every
# statement (ALTER DATABASE ... SET log_statement = 'all'; nothing else of the cluster changes),
# creates one user with the CLI, stores 3 credentials, warms the entitlements cache, then logs:
#   service GET   one GET
#   service PUT   one PUT of the binance API secret
#   pgbench list  one transaction of scripts/bench/pgbench/list.sql  (-M prepared)
#   pgbench write one transaction of scripts/bench/pgbench/write.sql (-M prepared)
# reads those statements back from PostgreSQL's log, normalises them (scripts/bench/statements.py)
# and prints them. Exit status: 0 when GET = list and PUT = write, 3 when they differ, other
# values on failure. The database is dropped and the service stopped on any exit.
#
# Usage: scripts/bench/capture.sh [output-dir]   (keeps the four normalised lists there)
# Needs: PostgreSQL on TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test) whose
# log this user can read (PG_LOG_FILE overrides where it is), pgbench, curl, python3.
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "$0")/lib.sh"
out=${1:-}
work=$(mktemp -d)
trap 'bench_cleanup; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
[[ -n $out ]] || out=$work
mkdir -p "$out"
port=${CAPTURE_PORT:-18790}

bench_build
log=$(bench_pg_log_file)
[[ -n $log && -r $log ]] || { echo "capture: cannot read PostgreSQL's log (set PG_LOG_FILE)" >&2; exit 2; }

db=us_capture_$$
bench_create_database "$db"
url=$bench_url
psql -qX "$bench_admin_url" -c "ALTER DATABASE $db SET log_statement = 'all'" >/dev/null
bench_service_env
# A long cache TTL keeps the entitlements reads (once per user and TTL) out of the requests
# captured below; they are listed apart, from the warm-up request.
export DATABASE_URL=$url ENTITLEMENTS_CACHE_TTL_SECS=3600

bench_start "$port" "$work/server.log"
token=$(DATABASE_URL=$url "$bench_bin" users create --email capture@example.com --print-token | tail -n 1)
uid=$(psql -qAtX "$url" -c "SELECT id FROM users WHERE email = 'capture@example.com'")
api=http://127.0.0.1:$port/users/me/broker-credentials
call() {
  curl -sf -o /dev/null -X "$1" "$api" -H "Authorization: Bearer $token" \
    ${2:+-H 'Content-Type: application/json' -d "$2"}
}
offset() { stat -c %s "$log"; }
extract() { python3 "$bench_dir/statements.py" extract "$log" "$1" "$2" "$db"; }

o0=$(offset)
call PUT '{"credentials":[{"broker":"binance","api_key":"AKIAIOSFODNN7EXAMPLE","api_secret":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},{"broker":"kraken","api_key":"kraken-key-0123456789","api_secret":"a3Jha2VuLXNlY3JldA=="},{"broker":"ibkr","api_key":"IBKR-USER","api_secret":"IBKR-SECRET-0001"}]}'
call GET
o1=$(offset)
call GET
o2=$(offset)
call PUT '{"credentials":[{"broker":"binance","api_secret":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYROTATED1"}]}'
o3=$(offset)
pgbench_once() {
  # shellcheck disable=SC2046 # values.sh prints several -D options
  pgbench -n -M prepared -c 1 -t 1 -D minuid="$uid" -D maxuid="$uid" \
    $(bash "$bench_dir/pgbench/values.sh") -f "$bench_dir/pgbench/$1.sql" "$url" >"$work/pgbench-$1.log" 2>&1 \
    || { echo "capture: pgbench $1.sql failed:" >&2; cat "$work/pgbench-$1.log" >&2; exit 2; }
}
# (read outside the windows below: these queries are logged too)
versions() { psql -qAtX "$url" -c "SELECT sum(version) FROM user_broker_credentials"; }
v0=$(versions)
o3b=$(offset)
pgbench_once list
o4=$(offset)
pgbench_once write
o5=$(offset)
if (($(versions) != v0 + 1)); then
  echo "capture: pgbench write.sql did not rewrite exactly one row (versions $v0 -> $(versions))" >&2
  exit 2
fi

extract "$o0" "$o1" >"$out/service-first-requests.sql"
extract "$o1" "$o2" >"$out/service-get.sql"
extract "$o2" "$o3" >"$out/service-put.sql"
extract "$o3b" "$o4" >"$out/pgbench-list.sql"
extract "$o4" "$o5" >"$out/pgbench-write.sql"

show() {
  echo "-- $1"
  sed 's/^/   /' "$2"
}
show "service: a user's first requests (store 3 credentials, then GET; includes the entitlements reads)" "$out/service-first-requests.sql"
show "service: GET /users/me/broker-credentials" "$out/service-get.sql"
show "pgbench: scripts/bench/pgbench/list.sql" "$out/pgbench-list.sql"
show "service: PUT of one credential" "$out/service-put.sql"
show "pgbench: scripts/bench/pgbench/write.sql" "$out/pgbench-write.sql"

status=0
for pair in get:list put:write; do
  set -- "${pair%:*}" "${pair#*:}"
  if python3 "$bench_dir/statements.py" compare "$out/service-$1.sql" "$out/pgbench-$2.sql"; then
    echo "MATCH: service ${1^^} = pgbench $2.sql"
  else
    echo "DIFFER: service ${1^^} != pgbench $2.sql"
    diff -u --label "service ${1^^}" --label "pgbench $2.sql" \
      <(grep -v '^--' "$out/service-$1.sql") <(grep -v '^--' "$out/pgbench-$2.sql") || true
    status=3
  fi
done
exit $status
