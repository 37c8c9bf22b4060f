-- Sign-in sessions (docs/security.md, "Sessions"): one row per refresh token issued, so that
-- every replica agrees on which refresh tokens still work. A refresh rotates its session with
-- one conditional UPDATE (WHERE replaced_at IS NULL AND revoked_at IS NULL), so two concurrent
-- refreshes with the same token cannot both succeed.
CREATE TABLE IF NOT EXISTS auth_sessions (
    id TEXT PRIMARY KEY,
    family TEXT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    replaced_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS ix_auth_sessions_family ON auth_sessions (family);
CREATE INDEX IF NOT EXISTS ix_auth_sessions_user_id ON auth_sessions (user_id);
