DROP TRIGGER IF EXISTS trg_user_broker_credentials_unbound_ends_consent ON user_broker_credentials;
DROP FUNCTION IF EXISTS user_broker_credentials_unbound_ends_consent();
ALTER TABLE credential_audit_events DROP COLUMN IF EXISTS detail;
ALTER TABLE credential_audit_events DROP COLUMN IF EXISTS actor_service;
ALTER TABLE user_broker_credentials DROP COLUMN IF EXISTS trading_enabled;
