#!/usr/bin/env bash
# Where the service spends its CPU under load (`just profile`): perf samples the release service
# (cpu-clock: this machine has no hardware counters) while wrk drives one scenario, then prints
# the top symbols by self time and by inclusive time, and writes a flamegraph with inferno
# (installed on first use with `cargo install --locked inferno`, about a minute; FLAMEGRAPH=0
# skips both).
#
# Settings (environment):
#   SCENARIO=get | put     BACKEND=postgres | sqlite   DURATION=10   CONNECTIONS=64   USERS=1000
#   THREADS=2   FREQUENCY=499 (samples per second per CPU)
#   CALL_GRAPH=dwarf       dwarf: stacks unwound from .eh_frame (works on the normal release build,
#                          bigger files); fp: frame pointers (cheap, but the release build and
#                          Rust's std have none, so only the self-time table is reliable)
#   SYSTEM_WIDE=1          sample every process (service, PostgreSQL, wrk) instead of the service
#   PROFILE_DIR            where perf.data, the reports and the flamegraph are kept
#                          (default target/profile/<date>)
# Same cleanup as run.sh: the service is stopped and the throwaway database dropped on any exit.
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "$0")/lib.sh"

scenario=${SCENARIO:-get}
backend=${BACKEND:-postgres}
duration=${DURATION:-10}
connections=${CONNECTIONS:-64}
users=${USERS:-1000}
threads=${THREADS:-2}
frequency=${FREQUENCY:-499}
call_graph=${CALL_GRAPH:-dwarf}
out=${PROFILE_DIR:-$bench_root/target/profile/$(date -u +%Y%m%d-%H%M%S)}
port=${BENCH_PORT:-18700}

command -v perf >/dev/null || { echo "profile.sh: perf is needed (Debian: linux-perf)" >&2; exit 2; }
work=$(mktemp -d)
trap 'bench_cleanup; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$out"

bench_build
bench_service_env
if [[ $backend == postgres ]]; then
  bench_create_database "us_profile_$$"
  url=$bench_url
else
  url=sqlite://$work/bench.db
fi
export DATABASE_URL=$url
bench_start "$port" "$work/server.log"
service=$bench_started
bench_seed "$backend" "$url" "http://127.0.0.1:$port" "$users" "$work/tokens.txt"
drive() {
  TOKENS_FILE=$work/tokens.txt MODE=$scenario \
    wrk -t"$threads" -c"$connections" -d"$1s" -s "$bench_dir/tokens.lua" "http://127.0.0.1:$port" | grep '^RESULT'
}
echo "warming up (2 s)..."
drive 2 >/dev/null

case $call_graph in
  dwarf) graph=(--call-graph "dwarf,16384") ;;
  fp) graph=(-g) ;;
  *) echo "CALL_GRAPH is dwarf or fp" >&2; exit 2 ;;
esac
if [[ -n ${SYSTEM_WIDE:-} ]]; then target=(-a); else target=(-p "$service"); fi
echo "recording $scenario at $connections connections for ${duration}s (${target[*]}, $call_graph stacks)..."
perf record -q -e cpu-clock -F "$frequency" "${graph[@]}" "${target[@]}" -o "$out/perf.data" -- sleep "$duration" \
  2>"$work/perf-record.log" &
recorder=$!
bench_pids+=("$recorder")
drive "$duration"
wait "$recorder" || { cat "$work/perf-record.log" >&2; exit 1; }

report=(perf report -i "$out/perf.data" --stdio --no-header)
if [[ -n ${SYSTEM_WIDE:-} ]]; then report+=(--sort "comm,dso,symbol"); else report+=(--sort "dso,symbol"); fi
"${report[@]}" --no-children --percent-limit 0.5 -g none >"$out/self.txt" 2>/dev/null
"${report[@]}" --children --percent-limit 2 -g none >"$out/inclusive.txt" 2>/dev/null
# perf pads every line to the longest symbol; keep lines readable.
top() { grep -v '^#' "$1" | grep -v '^$' | sed -E 's/[[:space:]]+(-[[:space:]]+)*$//' | cut -c1-170 | sed -n "1,${2}p"; }
echo
echo "== top symbols by self time ($out/self.txt)"
top "$out/self.txt" 40
echo
echo "== top symbols by inclusive time, callees included ($out/inclusive.txt)"
top "$out/inclusive.txt" 30
if [[ ${FLAMEGRAPH:-1} != 0 ]] && ! command -v inferno-flamegraph >/dev/null; then
  echo
  echo "installing inferno for the flamegraph (cargo install --locked inferno, once)..."
  cargo install -q --locked inferno || echo "could not install inferno" >&2
fi
if [[ ${FLAMEGRAPH:-1} != 0 ]] && command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null; then
  perf script -i "$out/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph >"$out/flamegraph.svg"
  echo
  echo "flamegraph: $out/flamegraph.svg"
else
  echo
  echo "no flamegraph (FLAMEGRAPH=0, or inferno could not be installed)"
fi
echo "perf data kept in $out (perf report -i $out/perf.data)"
