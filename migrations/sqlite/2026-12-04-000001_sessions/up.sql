-- Sign-in sessions (docs/security.md, "Sessions"): one row per refresh token issued, so that
-- every replica agrees on which refresh tokens still work. Same columns as on PostgreSQL.
CREATE TABLE auth_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    family TEXT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    expires_at TEXT NOT NULL,
    replaced_at TEXT,
    revoked_at TEXT
);
CREATE INDEX ix_auth_sessions_family ON auth_sessions (family);
CREATE INDEX ix_auth_sessions_user_id ON auth_sessions (user_id);
