# shellcheck shell=bash
# Shared by scripts that start user-service on their own (sourced, not run).

# wait_healthy URL LOG: waits up to 10 s for URL/health to answer; if it never does, prints the
# server's LOG and fails.
wait_healthy() {
  local url=$1 log=$2
  for _ in $(seq 1 200); do
    curl -fsS "$url/health" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  cat "$log" >&2
  return 1
}
