-- During a cut-over the Python service writes to the same table. Its UPDATEs change ciphertext
-- without knowing `version`, `key_id` or `binding`: left alone, the row would keep a binding tag
-- that no longer matches (and be reported undecryptable), and our compare-and-set would not see
-- the change. Any update that changes a ciphertext column but not `version` is therefore turned
-- into what it is: an unbound write of unknown key, with a new version and no test result.
-- Our own writes always move `version`, so they pass through untouched. A writer that also sets
-- `binding` (someone copying another row's ciphertext and tag) keeps its tag: it is then checked
-- against the new version and this row's owner, and fails, so the copy reads as undecryptable
-- instead of being laundered into an unbound legacy row.
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

DROP TRIGGER IF EXISTS trg_user_broker_credentials_foreign_write ON user_broker_credentials;
CREATE TRIGGER trg_user_broker_credentials_foreign_write
    BEFORE UPDATE ON user_broker_credentials
    FOR EACH ROW EXECUTE FUNCTION user_broker_credentials_foreign_write();
