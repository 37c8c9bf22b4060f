# shellcheck shell=bash disable=SC2034  # sets variables for the scripts that source it
# Shared by the scripts of scripts/bench (sourced, not run). Everything they start is recorded
# here and stopped by `bench_cleanup`, which the scripts call from their EXIT trap, so a failure
# at any point leaves no server and no database behind.

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench_dir=$bench_root/scripts/bench
bench_bin=${BENCH_BIN:-$bench_root/target/release/user-service}
bench_admin_url=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
bench_pids=()
bench_databases=()
# The command bench_start runs (bench_start_floor runs the floor instead).
bench_serve=("$bench_bin" serve)

bench_build() {
  if [[ -z ${BENCH_BIN:-} ]]; then
    (cd "$bench_root" && cargo build --release -q -p user-service)
  fi
  [[ -x $bench_bin ]] || { echo "no binary at $bench_bin" >&2; return 1; }
}

# bench_build_floor: builds the benchmark's floor (crates/app/examples/floor.rs) unless FLOOR_BIN
# names one; sets bench_floor_bin.
bench_build_floor() {
  bench_floor_bin=${FLOOR_BIN:-$bench_root/target/release/examples/floor}
  if [[ -z ${FLOOR_BIN:-} ]]; then
    (cd "$bench_root" && cargo build --release -q -p user-service --example floor)
  fi
  [[ -x $bench_floor_bin ]] || { echo "no floor binary at $bench_floor_bin" >&2; return 1; }
}

# Environment of a production-like service on loopback; the encryption key and JWT secret are
# generated per run and never printed.
bench_service_env() {
  BROKER_CREDENTIALS_ENCRYPTION_KEY=$("$bench_bin" keys generate)
  JWT_SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')
  export BROKER_CREDENTIALS_ENCRYPTION_KEY JWT_SECRET
  export APP_ENV=production RUN_MIGRATIONS=1 HOST=127.0.0.1 RUST_LOG=${RUST_LOG:-warn}
  # The service speaks to PostgreSQL without TLS; so does pgbench (libpq would prefer TLS).
  export PGSSLMODE=${PGSSLMODE:-disable}
  export DATABASE_POOL_SIZE=${DATABASE_POOL_SIZE:-16}
}

# bench_start PORT LOG [WRAPPER...]: starts `serve` on PORT (under WRAPPER, e.g. valgrind, when
# given) and waits, at most BENCH_START_TIMEOUT seconds (default 30), for /health; sets
# bench_started to its pid.
bench_start() {
  local port=$1 log=$2
  shift 2
  PORT=$port exec_wrapped "$@" "${bench_serve[@]}" >"$log" 2>&1 &
  bench_started=$!
  bench_pids+=("$bench_started")
  local deadline=$((SECONDS + ${BENCH_START_TIMEOUT:-30}))
  while ((SECONDS < deadline)); do
    if curl -sf -o /dev/null "http://127.0.0.1:$port/health"; then
      return 0
    fi
    kill -0 "$bench_started" 2>/dev/null || break
    sleep 0.1
  done
  echo "service on port $port did not become healthy; its log:" >&2
  cat "$log" >&2
  return 1
}

# bench_start_floor PORT LOG [ENV...]: starts the floor (bench_build_floor) like bench_start,
# with the environment assignments ENV (e.g. FLOOR_DATABASE=0).
bench_start_floor() {
  local port=$1 log=$2
  shift 2
  local saved=("${bench_serve[@]}")
  bench_serve=(env "$@" "$bench_floor_bin")
  bench_start "$port" "$log"
  bench_serve=("${saved[@]}")
}

# Replaces the background subshell by the command, so that $! is the service's (or the
# wrapper's) own pid: its /proc/<pid>/stat is the service's CPU time.
exec_wrapped() {
  exec "$@"
}

# bench_seed BACKEND DATABASE URL USERS TOKENS: seeds through the service at URL; sets bench_minuid
# and bench_maxuid.
bench_seed() {
  local range
  range=$(python3 "$bench_dir/seed.py" --backend "$1" --database "${2#sqlite://}" --users "$4" --url "$3" --out "$5")
  read -r bench_minuid bench_maxuid <<<"$range"
}

# bench_stop PID: stops one service we started and waits for it.
bench_stop() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local kept=()
  for p in "${bench_pids[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
  bench_pids=("${kept[@]}")
}

# bench_create_database NAME: a throwaway database next to TEST_DATABASE_URL's, dropped by
# bench_cleanup; sets bench_url to its URL. (Not to be called in a $(...) subshell, which would
# forget that it has to be dropped.)
bench_create_database() {
  local name=$1
  bench_databases+=("$name")
  psql -qX "$bench_admin_url" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
  bench_url=${bench_admin_url%/*}/$name
}

bench_drop_database() {
  psql -qX "$bench_admin_url" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 || true
}

bench_cleanup() {
  local pid name
  for pid in "${bench_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  bench_pids=()
  for name in "${bench_databases[@]}"; do
    bench_drop_database "$name"
  done
  bench_databases=()
}

bench_rss() {
  awk '/^VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$1/status"
}

# The postmaster's pid, when PostgreSQL runs on this machine (for its CPU time); else nothing.
# Found as the parent of the checkpointer, a process that lives as long as the cluster.
bench_postmaster() {
  local pid
  pid=$(psql -qAtX "$bench_admin_url" -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'" 2>/dev/null) || return 0
  [[ -n $pid && -r /proc/$pid/stat ]] || return 0
  sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $2 }'
}

# The file PostgreSQL logs to (PG_LOG_FILE overrides): the collector's current file, else the
# Debian cluster's log file for this port.
bench_pg_log_file() {
  if [[ -n ${PG_LOG_FILE:-} ]]; then
    echo "$PG_LOG_FILE"
    return
  fi
  local current data port
  current=$(psql -qAtX "$bench_admin_url" -c "SELECT pg_current_logfile()" 2>/dev/null || true)
  if [[ -n $current ]]; then
    data=$(psql -qAtX "$bench_admin_url" -c "SHOW data_directory")
    [[ $current == /* ]] && echo "$current" || echo "$data/$current"
    return
  fi
  port=$(psql -qAtX "$bench_admin_url" -c "SHOW port")
  command -v pg_lsclusters >/dev/null && pg_lsclusters --no-header | awk -v p="$port" '$3 == p { print $NF }'
}
