#!/usr/bin/env bash
# The -D options that scripts/bench/pgbench/write.sql needs: values of the sizes and types the
# service binds for a PUT of one API secret (a Fernet token of a 38-byte secret is 140
# characters, a binding tag "v1." + 43, a request id a UUID). The content is random: PostgreSQL's
# work does not depend on it.
set -euo pipefail
python3 - <<'PY'
import base64, datetime, os, uuid
token = base64.urlsafe_b64encode(b"\x80" + os.urandom(104)).decode()
tag = "v1." + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
print(f"-D sealed_secret={token} -D binding={tag} -D now={now} -D request_id={uuid.uuid4()} "
      "-D action=write -D outcome=success")
PY
