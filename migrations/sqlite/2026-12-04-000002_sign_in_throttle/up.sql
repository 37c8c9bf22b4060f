-- Sign-in throttling shared by every replica (docs/security.md): one GCRA bucket per row. `bucket`
-- is a SHA-256 (hex) of the bucket's kind and key, never an e-mail address in clear; `tat` is the
-- bucket's theoretical arrival time in microseconds since the epoch. One upsert per attempt
-- decides and counts it, so replicas and concurrent attempts cannot both take the last slot.
CREATE TABLE IF NOT EXISTS sign_in_throttle (
    bucket TEXT PRIMARY KEY,
    tat BIGINT NOT NULL
);
