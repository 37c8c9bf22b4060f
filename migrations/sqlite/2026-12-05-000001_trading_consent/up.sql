-- Same as on PostgreSQL: the owner's consent to trade with the row's key, off by default and
-- off again when the key or secret changes; who signed and what (method and path) in the audit.
ALTER TABLE user_broker_credentials ADD COLUMN trading_enabled BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE credential_audit_events ADD COLUMN actor_service TEXT;
ALTER TABLE credential_audit_events ADD COLUMN detail TEXT;

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
        last_tested_at = NULL,
        trading_enabled = 0
    WHERE id = NEW.id;
END;
