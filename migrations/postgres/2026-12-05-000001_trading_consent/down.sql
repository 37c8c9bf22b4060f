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
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
ALTER TABLE credential_audit_events DROP COLUMN IF EXISTS detail;
ALTER TABLE credential_audit_events DROP COLUMN IF EXISTS actor_service;
ALTER TABLE user_broker_credentials DROP COLUMN IF EXISTS trading_enabled;
