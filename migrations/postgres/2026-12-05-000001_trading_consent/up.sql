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

-- The foreign-writer guard of the cut-over migration, plus: a foreign writer (the Python service
-- while cut-over is open) that changes a ciphertext also ends the consent: the owner agreed to
-- trade with the key the row had, not with the new one.
CREATE OR REPLACE FUNCTION user_broker_credentials_foreign_write() RETURNS trigger AS $$
BEGIN
    IF NEW.version < OLD.version THEN
        RAISE EXCEPTION 'user_broker_credentials row %: version may only increase', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.version = OLD.version
       AND (NEW.api_key_encrypted IS DISTINCT FROM OLD.api_key_encrypted
            OR NEW.api_secret_encrypted IS DISTINCT FROM OLD.api_secret_encrypted) THEN
        IF NOT COALESCE((SELECT open FROM cutover_mode WHERE id = 1), FALSE) THEN
            RAISE EXCEPTION 'cut-over is closed: broker credentials are written by user-service only (user-service cutover open lets another writer in)'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        NEW.version := OLD.version + 1;
        IF NEW.binding IS NOT DISTINCT FROM OLD.binding THEN
            NEW.key_id := NULL;
            NEW.binding := NULL;
        END IF;
        NEW.last_test_status := NULL;
        NEW.last_tested_at := NULL;
        NEW.trading_enabled := FALSE;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
