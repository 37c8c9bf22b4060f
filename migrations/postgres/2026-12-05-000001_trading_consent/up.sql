-- Trading with a stored key (docs/signing.md). `trading_enabled` is the owner's consent that the
-- platform's order router may have requests signed with this row's key; off by default, and off
-- again whenever the key or the secret changes. The binding tag covers it when it is on, so a
-- database writer cannot grant it (docs/security.md).
ALTER TABLE user_broker_credentials
    ADD COLUMN IF NOT EXISTS trading_enabled BOOLEAN NOT NULL DEFAULT FALSE;

-- Who signed: a platform service has a name, not a user id; what was signed: method and path,
-- never query or body values.
ALTER TABLE credential_audit_events ADD COLUMN IF NOT EXISTS actor_service VARCHAR(64);
ALTER TABLE credential_audit_events ADD COLUMN IF NOT EXISTS detail VARCHAR(600);

-- An unbound row never carries the consent: a foreign writer's change of a ciphertext (which
-- the foreign-writer guard turns into an unbound row) ends it, so that binding the row later
-- (`keys rotate` while cut-over is open) cannot make a key the owner never agreed to signable.
-- BEFORE triggers fire in name order: this one after trg_user_broker_credentials_foreign_write.
CREATE OR REPLACE FUNCTION user_broker_credentials_unbound_ends_consent() RETURNS trigger AS $$
BEGIN
    IF NEW.binding IS NULL THEN
        NEW.trading_enabled := FALSE;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS trg_user_broker_credentials_unbound_ends_consent ON user_broker_credentials;
CREATE TRIGGER trg_user_broker_credentials_unbound_ends_consent
    BEFORE INSERT OR UPDATE ON user_broker_credentials
    FOR EACH ROW EXECUTE FUNCTION user_broker_credentials_unbound_ends_consent();
