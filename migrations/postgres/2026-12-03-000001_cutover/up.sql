-- Cut-over mode: whether rows without a binding tag are read (docs/security.md, "Binding").
--
-- One row for the whole database, so every replica reads the same mode. A database this service
-- creates starts closed; one upgraded from the Python service's schema (it has Alembic's
-- `alembic_version` table) or already holding an unbound row starts open, so that the Python
-- service's rows stay readable until `user-service cutover close`.
CREATE TABLE IF NOT EXISTS cutover_mode (
    id SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    open BOOLEAN NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO cutover_mode (id, open)
SELECT 1,
       to_regclass('alembic_version') IS NOT NULL
       OR EXISTS (
           SELECT 1 FROM user_broker_credentials
           WHERE binding IS NULL
             AND (api_key_encrypted IS NOT NULL OR api_secret_encrypted IS NOT NULL)
       )
ON CONFLICT (id) DO NOTHING;

-- Every change of mode is in the audit trail, whoever makes it (this service, or someone with
-- SQL access): target 0 stands for the whole database.
CREATE OR REPLACE FUNCTION cutover_mode_audit() RETURNS trigger AS $$
BEGIN
    IF NEW.open IS DISTINCT FROM OLD.open THEN
        INSERT INTO credential_audit_events (target_user_id, action, outcome)
        VALUES (0, CASE WHEN NEW.open THEN 'cutover_open' ELSE 'cutover_close' END, 'success');
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS trg_cutover_mode_audit ON cutover_mode;
CREATE TRIGGER trg_cutover_mode_audit
    AFTER UPDATE ON cutover_mode
    FOR EACH ROW EXECUTE FUNCTION cutover_mode_audit();

-- The foreign-writer guard, tightened:
-- * `version` never goes back, so an older copy of a row (its tag valid for its old version)
--   cannot be put back in place;
-- * once cut-over is closed, a write that changes a ciphertext without moving `version` (a
--   writer that does not bind: the Python service, a manual fix) is refused instead of being
--   turned into an unbound row, which would read as undecryptable anyway.
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

-- Rows inserted without a tag (the Python service's INSERTs) only while cut-over is open.
CREATE OR REPLACE FUNCTION user_broker_credentials_unbound_insert() RETURNS trigger AS $$
BEGIN
    IF NEW.binding IS NULL
       AND (NEW.api_key_encrypted IS NOT NULL OR NEW.api_secret_encrypted IS NOT NULL)
       AND NOT COALESCE((SELECT open FROM cutover_mode WHERE id = 1), FALSE) THEN
        RAISE EXCEPTION 'cut-over is closed: broker credentials are written by user-service only (user-service cutover open lets another writer in)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS trg_user_broker_credentials_unbound_insert ON user_broker_credentials;
CREATE TRIGGER trg_user_broker_credentials_unbound_insert
    BEFORE INSERT ON user_broker_credentials
    FOR EACH ROW EXECUTE FUNCTION user_broker_credentials_unbound_insert();
