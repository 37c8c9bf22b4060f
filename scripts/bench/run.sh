#!/usr/bin/env bash
# HTTP benchmark on loopback (`just bench`): what the service costs per request, beside PostgreSQL
# doing the same database work under pgbench, in one run. docs/benchmarking.md explains the method
# and every column.
#
# For each backend (SQLite, then PostgreSQL in a throwaway database): start the release service,
# seed USERS users with 3 credentials each, then for GET /users/me/broker-credentials and a PUT of
# one credential, at each connection count, run wrk for DURATION seconds and measure the CPU time
# of the service, of PostgreSQL and of the load generator over that window. On PostgreSQL, each
# service measurement is followed by pgbench -M prepared running the service's own statements
# (scripts/bench/pgbench/*.sql, checked against what the service really sends by
# scripts/bench/capture.sh) at the same concurrency. Prints one table and the ratios.
#
# Settings (environment):
#   DURATION=10          seconds per measurement
#   CONNECTIONS="16 64"  connection counts (wrk connections = pgbench clients)
#   USERS=1000           seeded users; every request picks one at random
#   REPLICAS=1           service processes on PostgreSQL (2: wrk's threads split between them;
#                        DATABASE_POOL_SIZE defaults to 16 / REPLICAS, the same connections in all)
#   BACKENDS="sqlite postgres"
#   SCENARIOS="get put"
#   THREADS=2            wrk threads = pgbench threads (a multiple of REPLICAS)
#   BENCH_PORT=18700     first port of the service(s)
#   DATABASE_POOL_SIZE, WORKERS, ...: passed to the service as usual
#   TEST_DATABASE_URL    where throwaway databases are created (default
#                        postgres://postgres@127.0.0.1:5432/test)
#   BENCH_BIN            an already built binary instead of `cargo build --release`
#   FLOOR=1              on PostgreSQL, also measure the floor (crates/app/examples/floor.rs: the
#                        same server, pool and statements, none of the service's own work) and,
#                        for GET, HTTP alone; FLOOR=0 skips them. FLOOR_BIN: an already built floor
# Only 127.0.0.1 is contacted; every loop and wait is bounded; anything started is stopped and
# every database created is dropped on exit, failure or Ctrl-C.
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "$0")/lib.sh"

duration=${DURATION:-10}
connections=${CONNECTIONS:-16 64}
users=${USERS:-1000}
replicas=${REPLICAS:-1}
backends=${BACKENDS:-sqlite postgres}
scenarios=${SCENARIOS:-get put}
floor=${FLOOR:-1}
threads=${THREADS:-2}
base_port=${BENCH_PORT:-18700}

work=$(mktemp -d)
trap 'bench_cleanup; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
results=$work/results.jsonl
notes=$work/notes.txt
: >"$results"
: >"$notes"
note() { echo "$*" | tee -a "$notes"; }

for tool in wrk pgbench psql curl python3; do
  if ! command -v "$tool" >/dev/null; then
    if [[ $tool == wrk ]]; then
      apt-get install -y -qq wrk >/dev/null
    else
      echo "run.sh: $tool is needed" >&2
      exit 2
    fi
  fi
done
if ((threads % replicas != 0)); then
  echo "run.sh: THREADS ($threads) must be a multiple of REPLICAS ($replicas)" >&2
  exit 2
fi
for c in $connections; do
  ((c >= threads)) || { echo "run.sh: $c connections < $threads threads" >&2; exit 2; }
done

bench_build
[[ $floor == 1 ]] && bench_build_floor
if ((replicas > 1)) && [[ -z ${DATABASE_POOL_SIZE:-} ]]; then
  # The same 16 database connections in all as one process has, split between the replicas.
  DATABASE_POOL_SIZE=$(((16 + replicas - 1) / replicas))
fi
bench_service_env
postmaster=$(bench_postmaster)
pg_version=$(psql -qAtX "$bench_admin_url" -c "SHOW server_version" 2>/dev/null || echo "unreachable")

echo "user-service HTTP benchmark: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  build $(git -C "$bench_root" rev-parse --short HEAD 2>/dev/null || echo '?'), PostgreSQL $pg_version" \
  "(postmaster ${postmaster:-not on this machine: no PostgreSQL CPU}), wrk/pgbench threads $threads"
echo "  ${duration}s per measurement, connections: $connections, $users users x 3 credentials," \
  "pool $DATABASE_POOL_SIZE, workers ${WORKERS:-= cores}, replicas $replicas (PostgreSQL only)"

# Before the PostgreSQL measurements: do the pgbench scripts still send what the service sends?
statements_checked=0
check_statements() {
  echo "checking that the pgbench scripts are the service's statements (scripts/bench/capture.sh)..."
  local status=0
  BENCH_BIN=$bench_bin CAPTURE_PORT=$((base_port + 90)) bash "$bench_dir/capture.sh" "$work/capture" \
    >"$work/capture.log" 2>&1 || status=$?
  case $status in
    0) note "Statements: the service's GET = pgbench/list.sql and PUT = pgbench/write.sql (captured this run)." ;;
    3)
      note "WARNING: the pgbench scripts no longer send what the service sends: the service/pgbench ratios below"
      note "compare different database work. Update scripts/bench/pgbench/*.sql (capture.sh shows both):"
      grep -A100 -m1 '^DIFFER' "$work/capture.log" | sed 's/^/    /' | cut -c1-220 | tee -a "$notes" >/dev/null
      ;;
    *)
      note "WARNING: could not check the pgbench scripts against the service's statements (capture.sh exit $status):"
      tail -n 5 "$work/capture.log" | sed 's/^/    /' | tee -a "$notes" >/dev/null
      ;;
  esac
  statements_checked=1
}

# pg_prepare URL: the same starting point for every PostgreSQL measurement (no autovacuum or
# checkpoint debt carried over from the previous one).
pg_prepare() {
  psql -qX "$1" -c "VACUUM ANALYZE user_broker_credentials" -c "VACUUM ANALYZE credential_audit_events" -c "CHECKPOINT" >/dev/null
}

# pgbench's write script cannot compute a binding tag: the rows it rewrites are left with a
# random token and tag, which the service then finds tampered, and every later read of such a
# row is logged and audited as a binding failure (an extra INSERT per row and request). Before
# pgbench writes, pg_save_rows URL keeps the rows; pg_restore_rows URL puts back those pgbench
# changed, so that the next measurement starts from rows the service wrote. The guard triggers
# refuse a version that goes back, so the restore runs with them off (a superuser's
# session_replication_role); where that is refused, the report says so.
pg_save_rows() {
  psql -qX "$1" -c "DROP TABLE IF EXISTS bench_rows_saved" \
    -c "CREATE TABLE bench_rows_saved AS SELECT * FROM user_broker_credentials" >/dev/null
}

pg_restore_rows() {
  if ! psql -qX -v ON_ERROR_STOP=1 "$1" >/dev/null 2>"$work/restore.err" <<'SQL'
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE user_broker_credentials u SET api_key_encrypted = s.api_key_encrypted,
  api_secret_encrypted = s.api_secret_encrypted, key_id = s.key_id, binding = s.binding,
  version = s.version, updated_at = s.updated_at, last_test_status = s.last_test_status,
  last_tested_at = s.last_tested_at, trading_enabled = s.trading_enabled
  FROM bench_rows_saved s WHERE u.id = s.id AND u.version <> s.version;
COMMIT;
DROP TABLE bench_rows_saved;
SQL
  then
    note "WARNING: the rows pgbench rewrote could not be restored ($(head -c 200 "$work/restore.err"));"
    note "the service's later PUT rows read rows it finds tampered (a binding failure audited per row and read)."
  fi
}

# pg_slots N: whether PostgreSQL can take N more connections now.
pg_slots() {
  local free
  free=$(psql -qAtX "$bench_admin_url" -c "SELECT current_setting('max_connections')::int
    - current_setting('superuser_reserved_connections')::int - count(*) FROM pg_stat_activity
    WHERE backend_type = 'client backend'")
  ((free >= $1))
}

run_backend() {
  local backend=$1 db url count=1 ports=() pids=() targets=() services=() i
  if [[ $backend == postgres ]]; then
    ((statements_checked)) || check_statements
    db=us_bench_$$
    bench_create_database "$db"
    url=$bench_url
    count=$replicas
  else
    url=sqlite://$work/bench.db
    db=$work/bench.db
  fi
  export DATABASE_URL=$url
  for ((i = 0; i < count; i++)); do
    ports+=($((base_port + i)))
    bench_start "${ports[i]}" "$work/server-$backend-$i.log"
    pids+=("$bench_started")
    targets+=("127.0.0.1:${ports[i]}")
    services+=(--service "process$((i + 1))=$bench_started")
  done
  for ((i = 0; i < count; i++)); do
    note "$backend: idle RSS after start, process $((i + 1)) of $count: $(bench_rss "${pids[i]}")"
  done

  bench_seed "$backend" "$url" "http://${targets[0]}" "$users" "$work/tokens.txt"
  # The floor on the same database: with it (floor), and without touching it (floor-http).
  local floors=()
  if [[ $backend == postgres && $floor == 1 ]]; then
    bench_start_floor $((base_port + 50)) "$work/floor.log" FLOOR_USERS="$bench_minuid-$bench_maxuid"
    floors+=("floor:$bench_started:$((base_port + 50))")
    bench_start_floor $((base_port + 51)) "$work/floor-http.log" FLOOR_DATABASE=0
    floors+=("floor-http:$bench_started:$((base_port + 51))")
  fi
  local versions_db=${url#sqlite://}
  [[ $backend == postgres ]] && pg_prepare "$url"

  # PostgreSQL's CPU only where it serves this backend (on SQLite it would be someone else's).
  local cluster=()
  [[ $backend == postgres && -n $postmaster ]] && cluster=(--postmaster "$postmaster")
  local scenario c script versions activity
  for scenario in $scenarios; do
    for c in $connections; do
      versions=()
      [[ $scenario == put ]] && versions=(--versions "$versions_db")
      activity=()
      if [[ $backend == postgres ]]; then
        pg_prepare "$url"
        [[ -n $postmaster ]] && activity=(--pg-activity "$url")
      fi
      local wrk_targets=""
      ((count > 1)) && wrk_targets=$(IFS=,; echo "${targets[*]}")
      TOKENS_FILE=$work/tokens.txt MODE=$scenario TARGETS=$wrk_targets \
        python3 "$bench_dir/measure.py" --results "$results" --backend "$backend" --scenario "$scenario" \
        --connections "$c" --kind wrk "${services[@]}" "${cluster[@]}" \
        "${versions[@]}" "${activity[@]}" --output "$work/wrk-$backend-$scenario-$c.txt" \
        -- wrk -t"$threads" -c"$c" -d"${duration}s" -s "$bench_dir/tokens.lua" "http://${targets[0]}"
      if [[ $backend == postgres ]]; then
        script="list"
        versions=()
        if [[ $scenario == put ]]; then
          script="write"
          versions=(--versions "$url")
        fi
        pg_prepare "$url"
        if ! pg_slots "$c"; then
          note "SKIPPED pgbench $script.sql at $c clients: PostgreSQL has fewer free connections (max_connections)"
          continue
        fi
        [[ $script == write ]] && pg_save_rows "$url"
        # shellcheck disable=SC2046 # values.sh prints several -D options
        python3 "$bench_dir/measure.py" --results "$results" --backend "$backend" --scenario "pgbench-$script" \
          --connections "$c" --kind pgbench "${cluster[@]}" \
          --pgbench-log-prefix "$work/pgbench-log" \
          "${versions[@]}" "${activity[@]}" --output "$work/pgbench-$script-$c.txt" \
          -- pgbench -n -M prepared -c "$c" -j "$threads" -T "$duration" -l --log-prefix "$work/pgbench-log" \
          -D minuid="$bench_minuid" -D maxuid="$bench_maxuid" $(bash "$bench_dir/pgbench/values.sh") \
          -f "$bench_dir/pgbench/$script.sql" "$url"
        [[ $script == write ]] && pg_restore_rows "$url"
      fi
      local f name pid port
      for f in "${floors[@]}"; do
        IFS=: read -r name pid port <<<"$f"
        # HTTP alone answers a fixed list: measured for GET only.
        [[ $name == floor-http && $scenario != get ]] && continue
        [[ $backend == postgres ]] && pg_prepare "$url"
        TOKENS_FILE=$work/tokens.txt MODE=$scenario \
          python3 "$bench_dir/measure.py" --results "$results" --backend "$backend" --scenario "$name-$scenario" \
          --connections "$c" --kind wrk --service "$name=$pid" "${cluster[@]}" \
          "${activity[@]}" --output "$work/wrk-$name-$scenario-$c.txt" \
          -- wrk -t"$threads" -c"$c" -d"${duration}s" -s "$bench_dir/tokens.lua" "http://127.0.0.1:$port"
      done
    done
  done
  for ((i = 0; i < count; i++)); do
    note "$backend: RSS right after the load, process $((i + 1)) of $count: $(bench_rss "${pids[i]}")"
  done
  for pid in "${pids[@]}"; do bench_stop "$pid"; done
  for f in "${floors[@]}"; do
    IFS=: read -r _ pid _ <<<"$f"
    bench_stop "$pid"
  done
  if [[ $backend == postgres ]]; then
    bench_drop_database "$db"
  fi
}

for backend in $backends; do
  echo "== $backend"
  run_backend "$backend"
done
python3 "$bench_dir/report.py" "$results" "$notes"
