-- The user-service schema on SQLite (the embedded default). Same tables and columns as on
-- PostgreSQL; timestamps are UTC text `YYYY-MM-DD HH:MM:SS.ffffff`, JSON is text.

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email VARCHAR(255) NOT NULL,
    password_hash VARCHAR(255),
    first_name VARCHAR(120),
    last_name VARCHAR(120),
    phone VARCHAR(32),
    marketing_opt_in BOOLEAN NOT NULL DEFAULT FALSE,
    is_active BOOLEAN NOT NULL DEFAULT FALSE,
    is_superuser BOOLEAN NOT NULL DEFAULT FALSE,
    deleted_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE user_preferences (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    preferences TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE user_broker_credentials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    broker VARCHAR(64) NOT NULL,
    label VARCHAR(255),
    api_key_encrypted TEXT,
    api_secret_encrypted TEXT,
    key_id VARCHAR(128),
    binding TEXT,
    version BIGINT NOT NULL DEFAULT 1,
    last_test_status VARCHAR(32),
    last_tested_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    CONSTRAINT uq_user_broker_credentials UNIQUE (user_id, broker)
);

CREATE TABLE onboarding_progress (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    current_step VARCHAR(64) NOT NULL DEFAULT 'account-profile',
    completed_steps TEXT NOT NULL DEFAULT '[]',
    restarted_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE user_capabilities (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    capability VARCHAR(128) NOT NULL,
    granted BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (user_id, capability)
);

-- No foreign key: the trail outlives the accounts it is about. No value column, ever.
CREATE TABLE credential_audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    actor_id BIGINT,
    target_user_id BIGINT NOT NULL,
    action VARCHAR(32) NOT NULL,
    broker VARCHAR(64),
    outcome VARCHAR(64) NOT NULL,
    key_id VARCHAR(128),
    request_id VARCHAR(255)
);
CREATE INDEX ix_credential_audit_events_target_occurred
    ON credential_audit_events (target_user_id, occurred_at DESC);
