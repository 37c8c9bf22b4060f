#!/usr/bin/env bash
# The fleet harness (scripts/fleet/fleet.py): PostgreSQL primary + synchronous standby, three
# replicas behind HAProxy, the production scenarios under load. Installs HAProxy when missing,
# builds the service unless USER_SERVICE_BIN names a binary, then runs every scenario (or those
# named as arguments). Prints one line per scenario; exits non-zero on any violation.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v haproxy >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null
fi
if ! command -v pg_basebackup >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if [ -z "${USER_SERVICE_BIN:-}" ]; then
  cargo build -q -p user-service --locked
  USER_SERVICE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/user-service"
fi
exec python3 scripts/fleet/fleet.py --binary "$USER_SERVICE_BIN" "$@"
