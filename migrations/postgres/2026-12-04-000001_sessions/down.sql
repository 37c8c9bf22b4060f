DROP INDEX IF EXISTS ix_auth_sessions_user_id;
DROP INDEX IF EXISTS ix_auth_sessions_family;
DROP TABLE IF EXISTS auth_sessions;
