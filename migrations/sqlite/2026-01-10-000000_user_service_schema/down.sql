DROP TABLE IF EXISTS credential_audit_events;
DROP TABLE IF EXISTS user_capabilities;
DROP TABLE IF EXISTS onboarding_progress;
DROP TABLE IF EXISTS user_broker_credentials;
DROP TABLE IF EXISTS user_preferences;
DROP TABLE IF EXISTS users;
