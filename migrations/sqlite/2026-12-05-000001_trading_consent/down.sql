DROP TRIGGER IF EXISTS trg_user_broker_credentials_foreign_write;
CREATE TRIGGER trg_user_broker_credentials_foreign_write
    AFTER UPDATE OF api_key_encrypted, api_secret_encrypted ON user_broker_credentials
    FOR EACH ROW
    WHEN NEW.version = OLD.version
         AND (NEW.api_key_encrypted IS NOT OLD.api_key_encrypted
              OR NEW.api_secret_encrypted IS NOT OLD.api_secret_encrypted)
BEGIN
    UPDATE user_broker_credentials
    SET version = OLD.version + 1,
        key_id = CASE WHEN NEW.binding IS OLD.binding THEN NULL ELSE NEW.key_id END,
        binding = CASE WHEN NEW.binding IS OLD.binding THEN NULL ELSE NEW.binding END,
        last_test_status = NULL,
        last_tested_at = NULL
    WHERE id = NEW.id;
END;
ALTER TABLE credential_audit_events DROP COLUMN detail;
ALTER TABLE credential_audit_events DROP COLUMN actor_service;
ALTER TABLE user_broker_credentials DROP COLUMN trading_enabled;
