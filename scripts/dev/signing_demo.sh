#!/usr/bin/env bash
# The order router's path, end to end with real processes (docs/signing.md):
#   user-service (APP_ENV=local, SQLite, SIGNING_SERVICES=order-router), a trader who stores a
#   Binance key, allows trading with it and holds can.route_orders; the Binance stand-in
#   (crates/brokers/examples/binance_stand_in.rs), which knows that key and checks signatures as
#   Binance does; and the client's example (crates/client/examples/place_test_order.rs), which
#   has a test order signed through the route and sends it to the stand-in.
# Prints what each step did, never a key, a secret or a token; exits non-zero when the order is
# not accepted. Usage: scripts/dev/signing_demo.sh   (builds what it needs; CI runs it)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/dev/lib.sh
source "$root/scripts/dev/lib.sh"
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d)
server= stand_in=
cleanup() {
  [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [[ -n $stand_in ]] && kill "$stand_in" 2>/dev/null && wait "$stand_in" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

cargo build -q --locked -p user-service
cargo build -q --locked -p user-service-brokers --features stand-in --example binance_stand_in
cargo build -q --locked -p user-service-client --example place_test_order
bin=$target/debug/user-service

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
export APP_ENV=local USER_SERVICE_DATA_DIR=$work/data HOST=127.0.0.1 PORT=$port RUST_LOG=warn \
  SIGNING_SERVICES=order-router ENTITLEMENTS_CACHE_TTL_SECS=0
unset DATABASE_URL JWT_SECRET JWT_SECRET_FILE BROKER_CREDENTIALS_ENCRYPTION_KEY \
  BROKER_CREDENTIALS_ENCRYPTION_KEY_FILE SECRET_MANAGER_PROVIDER
"$bin" serve >"$work/server.log" 2>&1 &
server=$!
wait_healthy "$base" "$work/server.log"
echo "1. user-service on $base (SIGNING_SERVICES=order-router)"

created=$("$bin" users create --email trader@example.com --print-token 2>>"$work/cli.log")
user_id=$(head -n 1 <<<"$created")
token=$(tail -n 1 <<<"$created")
key="demo-binance-key-$RANDOM$RANDOM"
secret="demo-binance-secret-$RANDOM$RANDOM$RANDOM"
put() {
  curl -fsS -o /dev/null -X PUT "$base/users/me/broker-credentials" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' --data-binary @-
}
printf '{"credentials":[{"broker":"binance","api_key":"%s","api_secret":"%s"}]}' "$key" "$secret" | put
printf '{"credentials":[{"broker":"binance","trading_enabled":true}]}' | put
"$bin" grant trader@example.com can.route_orders >/dev/null 2>>"$work/cli.log"
echo "2. trader $user_id stored a Binance key, allowed trading with it, holds can.route_orders"

# The order router's token: HS256 with the platform's JWT secret (here the development one).
service_token=$(python3 -c '
import sys
sys.path.insert(0, "scripts/lib")
from platform_jwt import mint
print(mint(open(sys.argv[1]).read().strip(), "order-router"))' "$work/data/dev-jwt.secret")

exec 3> >(STAND_IN_KEY=$key STAND_IN_SECRET=$secret "$target/debug/examples/binance_stand_in" >"$work/stand_in.out" 2>&1)
stand_in=$!
for _ in $(seq 1 200); do
  grep -q 'listening on' "$work/stand_in.out" 2>/dev/null && break
  sleep 0.05
done
binance_url=$(sed -n 's/^listening on //p' "$work/stand_in.out")
[[ -n $binance_url ]] || { cat "$work/stand_in.out" >&2; exit 1; }
echo "3. the Binance stand-in on $binance_url knows that key"

answer=$(USER_SERVICE_URL=$base SERVICE_TOKEN=$service_token USER_ID=$user_id \
  BINANCE_URL=$binance_url "$target/debug/examples/place_test_order")
echo "4. the order router's example: $(head -n 1 <<<"$answer")"
exec 3>&- # the stand-in's standard input: it lists what it saw and exits
for _ in $(seq 1 100); do
  grep -qE ' (accepted|refused)$' "$work/stand_in.out" && break
  sleep 0.05
done
stand_in=
echo "5. the stand-in saw: $(tr '\n' ' ' <"$work/stand_in.out" | sed 's/listening on [^ ]* //')"

grep -q '^POST /api/v3/order/test -> 200' <<<"$answer" \
  || { echo "the signed order was not accepted:" >&2; echo "$answer" >&2; exit 1; }
grep -q '^POST /api/v3/order/test accepted' "$work/stand_in.out" \
  || { echo "the stand-in did not accept the signature" >&2; exit 1; }
for value in "$secret" "$key" "$token" "$service_token"; do
  if grep -qF -- "$value" "$work/server.log"; then
    echo "the server log holds a key, a secret or a token" >&2
    exit 1
  fi
done
echo "ok: signed through user-service and accepted by the stand-in; the secret never left"
