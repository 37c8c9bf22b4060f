-- Drops the service's tables and their rows (tests and development only). On a database upgraded
-- from the Python service, other tables of that service reference `users`: CASCADE drops those
-- foreign keys, not the tables.
DROP TABLE IF EXISTS credential_audit_events;
DROP TABLE IF EXISTS user_capabilities;
DROP TABLE IF EXISTS onboarding_progress;
DROP TABLE IF EXISTS user_broker_credentials;
DROP TABLE IF EXISTS user_preferences;
DROP TABLE IF EXISTS users CASCADE;
