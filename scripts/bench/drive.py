#!/usr/bin/env python3
"""Sends exactly COUNT requests, one at a time on one keep-alive connection, for callgrind.sh.

  drive.py URL TOKENS_FILE get|put COUNT

Users are taken in turn from TOKENS_FILE (the same requests as tokens.lua sends). Exits non-zero
at the first answer that is not 2xx.
"""

import http.client
import json
import sys

PUT_BODY = json.dumps(
    {"credentials": [{"broker": "binance", "api_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYROTATED1"}]}
)


def main():
    if len(sys.argv) != 5 or sys.argv[3] not in ("get", "put"):
        sys.exit(__doc__)
    url, tokens_file, mode, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    with open(tokens_file, encoding="ascii") as f:
        tokens = [line.strip() for line in f if line.strip()]
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    for i in range(count):
        headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
        if mode == "put":
            headers["Content-Type"] = "application/json"
            conn.request("PUT", "/users/me/broker-credentials", body=PUT_BODY, headers=headers)
        else:
            conn.request("GET", "/users/me/broker-credentials", headers=headers)
        response = conn.getresponse()
        response.read()
        if not 200 <= response.status < 300:
            sys.exit(f"request {i + 1} answered {response.status}")
    conn.close()


if __name__ == "__main__":
    main()
