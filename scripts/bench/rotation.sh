#!/usr/bin/env bash
# Rotation throughput on PostgreSQL: seeds N credential rows (default 100,000) the way the Python
# service wrote them (Fernet tokens from Python `cryptography` under OLD, no key id, no binding),
# then times `user-service keys rotate` twice with the release binary:
#   1. ring NEW,OLD  — every row re-encrypted under NEW, key id and binding set (legacy upgrade);
#   2. ring NEWER,NEW — every row re-encrypted again (a routine rotation);
# and `keys verify` after each. Prints rows/s per pass. Uses its own database, dropped at the end.
#
# Usage: scripts/bench/rotation.sh [rows=100000]   (BENCH_BIN: an already built binary instead of
# `cargo build --release`, e.g. to compare two builds)
set -euo pipefail
cd "$(dirname "$0")/../.."
rows=${1:-100000}
admin=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
db=bench_rotation_$$
base=${admin%/*}
work=$(mktemp -d)
trap 'psql -q "$admin" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

bin=${BENCH_BIN:-target/release/user-service}
[[ -n ${BENCH_BIN:-} ]] || cargo build --release -q -p user-service
psql -q "$admin" -c "CREATE DATABASE $db" >/dev/null
export DATABASE_URL="$base/$db" APP_ENV=production RUST_LOG=warn
export JWT_SECRET=bench-secret-bench-secret-bench-secret
OLD=$($bin keys generate); NEW=$($bin keys generate); NEWER=$($bin keys generate)
BROKER_CREDENTIALS_ENCRYPTION_KEY=$OLD $bin migrate >/dev/null
# A fresh database refuses rows without a binding tag: open cut-over mode, as a database the
# Python service still writes to would be, so that its rows can be seeded.
BROKER_CREDENTIALS_ENCRYPTION_KEY=$OLD $bin cutover open >/dev/null

users=$(( (rows + 1) / 2 ))
echo "seeding $rows rows for $users users (Python cryptography, key OLD)..."
psql -q "$DATABASE_URL" -c "INSERT INTO users (email, is_active)
  SELECT 'rot' || g || '@example.com', TRUE FROM generate_series(1, $users) g" >/dev/null
OLD="$OLD" ROWS="$rows" python3 - > "$work/rows.csv" <<'PY'
import csv, os, sys
from cryptography.fernet import Fernet
f = Fernet(os.environ["OLD"].encode())
rows = int(os.environ["ROWS"])
out = csv.writer(sys.stdout)
for i in range(rows):
    user = i // 2 + 1
    broker = "binance" if i % 2 == 0 else "kraken"
    out.writerow([user, broker, f.encrypt(b"AKIAIOSFODNN7EXAMPLE%d" % i).decode(),
                  f.encrypt(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY%d" % i).decode()])
PY
psql -q "$DATABASE_URL" -c "\copy user_broker_credentials (user_id, broker, api_key_encrypted, api_secret_encrypted) FROM '$work/rows.csv' WITH (FORMAT csv)"
psql -q "$DATABASE_URL" -c "ANALYZE user_broker_credentials" >/dev/null

pass() {
  local name=$1 ring=$2
  local start end
  start=$(date +%s.%N)
  BROKER_CREDENTIALS_ENCRYPTION_KEY=$ring $bin keys rotate > "$work/rotate.log" 2>&1 \
    || { cat "$work/rotate.log" >&2; exit 1; }
  end=$(date +%s.%N)
  BROKER_CREDENTIALS_ENCRYPTION_KEY=$ring $bin keys verify > "$work/verify.log" 2>&1 \
    || { cat "$work/verify.log" >&2; exit 1; }
  python3 -c "import sys; s=float(sys.argv[2])-float(sys.argv[1]); n=int(sys.argv[3]); print(f'{sys.argv[4]:<28} {n} rows in {s:6.1f} s = {n/s:8.0f} rows/s')" \
    "$start" "$end" "$rows" "$name"
  tail -n 3 "$work/verify.log" | sed 's/^/    verify: /'
}
echo "PostgreSQL $(psql -tA "$admin" -c 'SHOW server_version'), $(nproc) cores"
pass "legacy -> NEW (upgrade)" "$NEW,$OLD"
pass "NEW -> NEWER (rotation)" "$NEWER,$NEW"
