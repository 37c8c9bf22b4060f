"""Access tokens as the platform's auth service mints them (HS256; `sub`, `exp`, `iat`), for the
scripts that drive a running service: the HTTP benchmark's seeding (scripts/bench/seed.py) and
the fleet harness (scripts/fleet/fleet.py). Standard library only. Never print a token or the
secret: both are credentials."""

import base64
import hashlib
import hmac
import json
import time


def b64url(raw):
    """Unpadded base64url, as JWTs use."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def mint(secret, subject, lifetime=3600):
    """An HS256 access token for user `subject`, valid `lifetime` seconds from now."""
    now = int(time.time())
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = b64url(
        json.dumps({"sub": str(subject), "exp": now + lifetime, "iat": now}, separators=(",", ":")).encode()
    )
    signature = hmac.new(secret.encode(), f"{header}.{claims}".encode(), hashlib.sha256).digest()
    return f"{header}.{claims}.{b64url(signature)}"
