#!/usr/bin/env bash
# Instructions per request (`just callgrind`): the release service runs under callgrind, which
# counts the instructions it executes, the same count for the same binary and requests whatever
# else the machine does (unlike time). Instrumentation is switched on only for REQUESTS requests
# sent one at a time after seeding and a warm-up, then the count is dumped and divided.
#
# Settings (environment): SCENARIO=get|put  BACKEND=postgres|sqlite  REQUESTS=1000  USERS=50
#   CALLGRIND_DIR (default target/callgrind/<date>): callgrind.out.* kept there for
#   callgrind_annotate or kcachegrind.
# The entitlements cache is kept warm for the whole run (long TTL), so the count is the steady
# per-request path without its once-per-user-and-TTL reads. PostgreSQL's work is not counted.
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "$0")/lib.sh"

scenario=${SCENARIO:-get}
backend=${BACKEND:-postgres}
requests=${REQUESTS:-1000}
users=${USERS:-50}
out=${CALLGRIND_DIR:-$bench_root/target/callgrind/$(date -u +%Y%m%d-%H%M%S)}
port=${BENCH_PORT:-18700}

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is needed" >&2; exit 2; }
work=$(mktemp -d)
trap 'bench_cleanup; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$out"

bench_build
bench_service_env
if [[ $backend == postgres ]]; then
  bench_create_database "us_callgrind_$$"
  url=$bench_url
else
  url=sqlite://$work/bench.db
fi
export DATABASE_URL=$url ENTITLEMENTS_CACHE_TTL_SECS=3600
echo "starting the service under valgrind (slow)..."
BENCH_START_TIMEOUT=300 bench_start "$port" "$work/server.log" \
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.out" -q
service=$bench_started
bench_seed "$backend" "$url" "http://127.0.0.1:$port" "$users" "$work/tokens.txt"
# Warm-up: every user once (entitlements cache), and the pool's connections and statements.
python3 "$bench_dir/drive.py" "http://127.0.0.1:$port" "$work/tokens.txt" "$scenario" "$((users * 2))"

callgrind_control -i on "$service" >/dev/null 2>&1
python3 "$bench_dir/drive.py" "http://127.0.0.1:$port" "$work/tokens.txt" "$scenario" "$requests"
callgrind_control -d "$service" >/dev/null 2>&1
callgrind_control -i off "$service" >/dev/null 2>&1
# shellcheck disable=SC2012 # our own file names
dump=$(ls -t "$out"/callgrind.out* | sed -n 1p)

total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen { gsub(",", "", $1); print $1; seen = 1 }')
[[ -n $total ]] || { echo "callgrind.sh: no total in $dump" >&2; exit 1; }
echo
echo "$backend $scenario: $requests requests, $(printf "%'d" "$total") instructions in the service," \
  "$(python3 -c "print(f'{$total / $requests:,.0f}')") per request"
# valgrind's virtual CPU has no SHA extensions, so SHA-256 (HMAC of Fernet and of the binding
# tag) runs its portable code here, several times the instructions of the SHA-NI path used on
# this machine outside valgrind.
if callgrind_annotate "$dump" 2>/dev/null | grep 'sha256::soft' >/dev/null; then
  echo "note: SHA-256 ran its portable code under valgrind (no SHA-NI); outside valgrind it is much cheaper"
fi
echo
echo "== top functions by instructions, self ($dump)"
callgrind_annotate --inclusive=no "$dump" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | cut -c1-170 | sed -n '1,30p'
echo
echo "== top functions by instructions, inclusive"
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | cut -c1-170 | sed -n '1,30p'
