#!/usr/bin/env python3
"""Seeds users with 3 broker credentials each, for scripts/bench/run.sh, in a few seconds.

Users are inserted with one SQL statement (a CLI call per user would start a process and open a
pool per user), access tokens are minted here the way the platform's auth service issues them
(HS256 over JWT_SECRET, `sub` = user id as a string, `exp`, `iat`), and the credentials go through
the running service's API (`PUT /users/me/broker-credentials`, keep-alive connections from a few
threads), so they are really encrypted and bound like any user's.

Writes one token per line to --out (first line: the lowest user id), and prints the id range.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from platform_jwt import mint  # noqa: E402  (scripts/lib, shared by both harnesses)

CREDENTIALS = json.dumps(
    {
        "credentials": [
            {"broker": "binance", "api_key": "AKIAIOSFODNN7EXAMPLE", "api_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
            {"broker": "kraken", "api_key": "kraken-key-0123456789", "api_secret": "a3Jha2VuLXNlY3JldA=="},
            {"broker": "ibkr", "api_key": "IBKR-USER", "api_secret": "IBKR-SECRET-0001"},
        ]
    }
)


def insert_users(backend, database, count, prefix):
    if backend == "postgres":
        sql = (
            "INSERT INTO users (email, is_active) "
            f"SELECT '{prefix}' || g || '@example.com', TRUE FROM generate_series(1, {count}) g "
            "RETURNING id"
        )
        out = subprocess.run(
            ["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", database, "-c", sql],
            check=True, capture_output=True, text=True,
        ).stdout
        return [int(line) for line in out.split() if line.strip()]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    conn = sqlite3.connect(database, timeout=30)
    with conn:
        conn.executemany(
            "INSERT INTO users (email, is_active, created_at, updated_at) VALUES (?, 1, ?, ?)",
            [(f"{prefix}{i}@example.com", stamp, stamp) for i in range(1, count + 1)],
        )
    ids = [row[0] for row in conn.execute("SELECT id FROM users WHERE email LIKE ? ORDER BY id", (f"{prefix}%",))]
    conn.close()
    return ids


def put_credentials(host, port, tokens):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    for token in tokens:
        conn.request(
            "PUT", "/users/me/broker-credentials", body=CREDENTIALS,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"seeding PUT answered {response.status}: {body[:200]!r}")
    conn.close()
    return len(tokens)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--database", required=True, help="PostgreSQL URL or SQLite file path")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--url", required=True, help="service base URL, http://127.0.0.1:PORT")
    parser.add_argument("--out", required=True)
    parser.add_argument("--token-lifetime", type=int, default=6 * 3600)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    secret = os.environ["JWT_SECRET"]
    host, port = args.url.removeprefix("http://").rstrip("/").rsplit(":", 1)

    started = time.monotonic()
    ids = insert_users(args.backend, args.database, args.users, f"bench{os.getpid()}-")
    tokens = [mint(secret, user_id, args.token_lifetime) for user_id in ids]
    chunks = [tokens[i :: args.threads] for i in range(args.threads)]
    with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
        done = sum(pool.map(lambda chunk: put_credentials(host, int(port), chunk), chunks))
    with open(args.out, "w", encoding="ascii") as f:
        f.write("\n".join(tokens) + "\n")
    print(
        f"seeded {len(ids)} users x 3 credentials ({done} PUTs through the API) in "
        f"{time.monotonic() - started:.1f} s; user ids {min(ids)}..{max(ids)}",
        file=sys.stderr,
    )
    print(f"{min(ids)} {max(ids)}")


if __name__ == "__main__":
    main()
