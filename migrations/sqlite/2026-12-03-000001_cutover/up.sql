-- Cut-over mode: whether rows without a binding tag are read (docs/security.md, "Binding").
-- Same rules as on PostgreSQL (see its migration): one row, closed on a database this service
-- creates, open on one that came from the Python service or already holds an unbound row.
CREATE TABLE cutover_mode (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    open BOOLEAN NOT NULL,
    changed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
INSERT INTO cutover_mode (id, open)
SELECT 1,
       EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version')
       OR EXISTS (
           SELECT 1 FROM user_broker_credentials
           WHERE binding IS NULL
             AND (api_key_encrypted IS NOT NULL OR api_secret_encrypted IS NOT NULL)
       );

-- Every change of mode is in the audit trail, whoever makes it; target 0: the whole database.
CREATE TRIGGER trg_cutover_mode_audit
    AFTER UPDATE OF open ON cutover_mode
    FOR EACH ROW
    WHEN NEW.open IS NOT OLD.open
BEGIN
    INSERT INTO credential_audit_events (target_user_id, action, outcome)
    VALUES (0, CASE WHEN NEW.open THEN 'cutover_open' ELSE 'cutover_close' END, 'success');
END;

-- `version` never goes back: an older copy of a row cannot be put back in place.
CREATE TRIGGER trg_user_broker_credentials_version_increases
    BEFORE UPDATE OF version ON user_broker_credentials
    FOR EACH ROW
    WHEN NEW.version < OLD.version
BEGIN
    SELECT RAISE(ABORT, 'user_broker_credentials: version may only increase');
END;

-- Once cut-over is closed, a writer that does not bind is refused (on update and on insert).
CREATE TRIGGER trg_user_broker_credentials_foreign_write_closed
    BEFORE UPDATE OF api_key_encrypted, api_secret_encrypted ON user_broker_credentials
    FOR EACH ROW
    WHEN NEW.version = OLD.version
         AND (NEW.api_key_encrypted IS NOT OLD.api_key_encrypted
              OR NEW.api_secret_encrypted IS NOT OLD.api_secret_encrypted)
         AND NOT COALESCE((SELECT open FROM cutover_mode WHERE id = 1), 0)
BEGIN
    SELECT RAISE(ABORT, 'cut-over is closed: broker credentials are written by user-service only (user-service cutover open lets another writer in)');
END;

CREATE TRIGGER trg_user_broker_credentials_unbound_insert
    BEFORE INSERT ON user_broker_credentials
    FOR EACH ROW
    WHEN NEW.binding IS NULL
         AND (NEW.api_key_encrypted IS NOT NULL OR NEW.api_secret_encrypted IS NOT NULL)
         AND NOT COALESCE((SELECT open FROM cutover_mode WHERE id = 1), 0)
BEGIN
    SELECT RAISE(ABORT, 'cut-over is closed: broker credentials are written by user-service only (user-service cutover open lets another writer in)');
END;
