DROP TRIGGER IF EXISTS trg_user_broker_credentials_unbound_insert ON user_broker_credentials;
DROP FUNCTION IF EXISTS user_broker_credentials_unbound_insert();
DROP TRIGGER IF EXISTS trg_cutover_mode_audit ON cutover_mode;
DROP FUNCTION IF EXISTS cutover_mode_audit();
DROP TABLE IF EXISTS cutover_mode;

CREATE OR REPLACE FUNCTION user_broker_credentials_foreign_write() RETURNS trigger AS $$
BEGIN
    IF NEW.version = OLD.version
       AND (NEW.api_key_encrypted IS DISTINCT FROM OLD.api_key_encrypted
            OR NEW.api_secret_encrypted IS DISTINCT FROM OLD.api_secret_encrypted) THEN
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
