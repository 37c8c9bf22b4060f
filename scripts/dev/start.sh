#!/usr/bin/env bash
# Starts the user-service for local development (the operating document's `scripts/dev/start.sh`).
#
#   scripts/dev/start.sh                 build, start in the foreground (Ctrl-C stops it)
#   scripts/dev/start.sh --background    start, wait until ready, return; the server keeps running
#   scripts/dev/start.sh --stop          stop the server started with --background
#
# Settings come from the environment, then from .env.dev for what the environment leaves unset.
# When no encryption key is configured (BROKER_CREDENTIALS_ENCRYPTION_KEY, its _FILE variant or a
# secret manager), an EPHEMERAL key is generated with `user-service keys generate`: it lives only
# in the server's environment, so credentials stored during the run are unreadable after a
# restart. The script says so loudly. It then waits for GET /ready (with a deadline) and prints
# the URL of the /account page.
#
# Options:
#   --background        detach once ready; pid, log and URL go to the state directory
#   --stop              stop the background server of the state directory and exit
#   --state-dir DIR     where --background keeps user-service.{pid,log,url} (default ./data/dev-server)
#   --env-file FILE     settings file (default .env.dev at the repository root)
#   --no-env-file       read no settings file
#   --no-build          do not run cargo build (use USER_SERVICE_BIN or target/debug/user-service)
#   --release           build and run the release binary
#   --timeout SECS      how long to wait for /ready (default 60)
#   -h, --help          this text
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CALLER_DIR="$(pwd)"

mode=foreground
state_dir="./data/dev-server"
env_file="$ROOT/.env.dev"
build=1
profile=debug
timeout=60

die() { printf 'start.sh: %s\n' "$*" >&2; exit 1; }
say() { printf 'start.sh: %s\n' "$*" >&2; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --background) mode=background ;;
    --stop) mode=stop ;;
    --state-dir) [ $# -ge 2 ] || die "--state-dir needs a directory"; state_dir="$2"; shift ;;
    --env-file) [ $# -ge 2 ] || die "--env-file needs a file"; env_file="$2"; shift ;;
    --no-env-file) env_file="" ;;
    --no-build) build=0 ;;
    --release) profile=release ;;
    --timeout) [ $# -ge 2 ] || die "--timeout needs seconds"; timeout="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  shift
done
case "$timeout" in ''|*[!0-9]*) die "--timeout needs a whole number of seconds" ;; esac
# Paths given on the command line are relative to where the script was called from; everything
# else (the defaults, the relative paths of .env.dev such as ./data) to the repository root.
absolute() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$CALLER_DIR" "$1" ;; esac; }
[ "$state_dir" = "./data/dev-server" ] || state_dir="$(absolute "$state_dir")"
[ -z "$env_file" ] || env_file="$(absolute "$env_file")"
if [ -n "${USER_SERVICE_BIN:-}" ]; then USER_SERVICE_BIN="$(absolute "$USER_SERVICE_BIN")"; fi
cd "$ROOT"

pid_file="$state_dir/user-service.pid"
log_file="$state_dir/user-service.log"
url_file="$state_dir/user-service.url"

# The pid of a still-running server recorded in the state directory, if any. The command name is
# checked so that a pid reused by another process is never signalled.
recorded_pid() {
  [ -f "$pid_file" ] || return 1
  local pid
  pid="$(cat "$pid_file")"
  case "$pid" in ''|*[!0-9]*) return 1 ;; esac
  kill -0 "$pid" 2>/dev/null || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null || ps -p "$pid" -o comm= 2>/dev/null)" = "user-service" ] || return 1
  printf '%s\n' "$pid"
}

# Sends SIGTERM (graceful: requests in flight finish), then SIGKILL after the grace period.
stop_pid() {
  local pid="$1" waited=0
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge 400 ]; then
      say "pid $pid still running after 40 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
}

if [ "$mode" = stop ]; then
  if pid="$(recorded_pid)"; then
    stop_pid "$pid"
    say "stopped user-service (pid $pid)"
  else
    say "no running user-service recorded in $state_dir"
  fi
  rm -f "$pid_file" "$url_file"
  exit 0
fi

# --- settings: the environment first, then the settings file for what is still unset --------
if [ -n "$env_file" ]; then
  [ -f "$env_file" ] || die "settings file not found: $env_file (or pass --no-env-file)"
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    case "$line" in ''|'#'*) continue ;; esac
    name="${line%%=*}"
    value="${line#*=}"
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "$env_file: not a NAME=VALUE line: ${name:0:40}"
    # Optional surrounding quotes, as in docker's env files.
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then value="${BASH_REMATCH[1]}"; fi
    if [ -z "${!name+set}" ]; then export "$name=$value"; fi
  done < "$env_file"
fi
export APP_ENV="${APP_ENV:-local}" HOST="${HOST:-127.0.0.1}" PORT="${PORT:-8000}"

command -v curl >/dev/null 2>&1 || die "curl is needed to wait for /ready"

# --- the binary ----------------------------------------------------------------------------
if [ -n "${USER_SERVICE_BIN:-}" ]; then
  bin="$USER_SERVICE_BIN"
else
  if [ "$build" = 1 ]; then
    say "building user-service ($profile)"
    if [ "$profile" = release ]; then
      cargo build --release -q -p user-service
    else
      cargo build -q -p user-service
    fi
  fi
  bin="${CARGO_TARGET_DIR:-$ROOT/target}/$profile/user-service"
fi
[ -x "$bin" ] || die "no user-service binary at $bin (run without --no-build, or set USER_SERVICE_BIN)"

if [ "$mode" = background ] && pid="$(recorded_pid)"; then
  die "user-service is already running (pid $pid, $(cat "$url_file" 2>/dev/null || echo 'URL unknown')); stop it with: $0 --stop --state-dir $state_dir"
fi

# --- the encryption key --------------------------------------------------------------------
provider="$(printf '%s' "${SECRET_MANAGER_PROVIDER:-environment}" | tr '[:upper:]' '[:lower:]')"
if [ -z "${BROKER_CREDENTIALS_ENCRYPTION_KEY:-}" ] && [ -z "${BROKER_CREDENTIALS_ENCRYPTION_KEY_FILE:-}" ] \
  && { [ "$provider" = environment ] || [ "$provider" = env ]; }; then
  BROKER_CREDENTIALS_ENCRYPTION_KEY="$("$bin" keys generate 2>/dev/null)" \
    || die "user-service keys generate failed"
  export BROKER_CREDENTIALS_ENCRYPTION_KEY
  # Rows stored under the ephemeral key of an earlier run are under a key that is gone: /ready
  # would answer 503 for them forever. Here they are expected, so /ready tolerates them.
  export READY_ALLOW_RETIRED_KEY_ROWS="${READY_ALLOW_RETIRED_KEY_ROWS:-1}"
  cat >&2 <<'WARNING'
********************************************************************************************
WARNING: BROKER_CREDENTIALS_ENCRYPTION_KEY is not set: using an EPHEMERAL encryption key,
WARNING: generated for this run only and kept nowhere.
WARNING: Broker credentials stored now become UNREADABLE once the service restarts (they will
WARNING: be listed as undecryptable; /ready tolerates them: READY_ALLOW_RETIRED_KEY_ROWS=1).
WARNING: To keep them readable, set BROKER_CREDENTIALS_ENCRYPTION_KEY in .env.dev (a key from
WARNING: `user-service keys generate`). Development only: never run a deployment like this.
********************************************************************************************
WARNING
fi

# --- start, then wait for /ready -----------------------------------------------------------
mkdir -p "$state_dir"
if [ "$mode" = background ]; then
  : > "$log_file"
  nohup "$bin" serve >>"$log_file" 2>&1 </dev/null &
  pid=$!
  printf '%s\n' "$pid" > "$pid_file"
else
  log_file="$(mktemp "${TMPDIR:-/tmp}/user-service-start.XXXXXX")"
  "$bin" serve > >(tee -a "$log_file") 2>&1 &
  pid=$!
  # Ctrl-C or a TERM stops the server gracefully, then the script.
  trap 'stop_pid "$pid"; rm -f "$log_file"; exit 130' INT TERM
fi

# Stops the server just started and fails, showing the end of its log.
give_up() {
  say "$1"
  if [ "$mode" = background ]; then
    say "last lines of $log_file:"
    tail -n 20 "$log_file" >&2 || true
    rm -f "$pid_file" "$url_file"
  fi
  stop_pid "$pid"
  [ "$mode" = background ] || rm -f "$log_file"
  exit 1
}

deadline=$(( $(date +%s) + timeout ))
port=""
while [ -z "$port" ]; do
  kill -0 "$pid" 2>/dev/null || give_up "user-service exited before listening"
  # `listening on http://HOST:PORT`, in text or JSON logs; PORT=0 gets its real port here.
  port="$(grep -o 'listening on http://[^ "]*' "$log_file" 2>/dev/null | head -n 1 | sed 's/.*://')" || true
  [ "$(date +%s)" -lt "$deadline" ] || give_up "user-service did not listen within ${timeout} s"
  [ -n "$port" ] || sleep 0.1
done
case "$HOST" in 0.0.0.0|::|'[::]') url_host=127.0.0.1 ;; *:*) url_host="[$HOST]" ;; *) url_host="$HOST" ;; esac
url="http://$url_host:$port"

ready=""
while :; do
  kill -0 "$pid" 2>/dev/null || give_up "user-service exited before it was ready"
  ready="$(curl -sS --max-time 2 -o - -w '\n%{http_code}' "$url/ready" 2>/dev/null)" || ready=""
  [ "${ready##*$'\n'}" = 200 ] && break
  if [ "$(date +%s)" -ge "$deadline" ]; then
    give_up "GET $url/ready did not answer 200 within ${timeout} s (last answer: ${ready%$'\n'*})"
  fi
  sleep 0.2
done

say "user-service is ready at $url (pid $pid)"
say "open $url/account to sign in and store a broker key (API docs: $url/docs)"
if [ "$mode" = background ]; then
  printf '%s\n' "$url" > "$url_file"
  say "log: $log_file; stop it with: $0 --stop --state-dir $state_dir"
  printf '%s\n' "$url"
  exit 0
fi

set +e
wait "$pid"
status=$?
rm -f "$log_file"
exit "$status"
