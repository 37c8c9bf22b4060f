-- Same as on PostgreSQL: the owner's consent to trade with the row's key, off by default and off
-- again when the key or secret changes; who signed and what (method and path) in the audit.
ALTER TABLE user_broker_credentials ADD COLUMN trading_enabled BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE credential_audit_events ADD COLUMN actor_service TEXT;
ALTER TABLE credential_audit_events ADD COLUMN detail TEXT;

-- An unbound row never carries the consent (see the PostgreSQL migration): the UPDATE trigger
-- fires on the foreign-writer guard's own UPDATE, which unbinds a foreign write.
CREATE TRIGGER trg_user_broker_credentials_unbound_ends_consent
    AFTER UPDATE ON user_broker_credentials
    FOR EACH ROW
    WHEN NEW.binding IS NULL AND NEW.trading_enabled
BEGIN
    UPDATE user_broker_credentials SET trading_enabled = 0 WHERE id = NEW.id;
END;

CREATE TRIGGER trg_user_broker_credentials_unbound_inserted_without_consent
    AFTER INSERT ON user_broker_credentials
    FOR EACH ROW
    WHEN NEW.binding IS NULL AND NEW.trading_enabled
BEGIN
    UPDATE user_broker_credentials SET trading_enabled = 0 WHERE id = NEW.id;
END;
