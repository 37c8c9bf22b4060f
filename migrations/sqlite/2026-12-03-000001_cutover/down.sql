DROP TRIGGER IF EXISTS trg_user_broker_credentials_unbound_insert;
DROP TRIGGER IF EXISTS trg_user_broker_credentials_foreign_write_closed;
DROP TRIGGER IF EXISTS trg_user_broker_credentials_version_increases;
DROP TRIGGER IF EXISTS trg_cutover_mode_audit;
DROP TABLE IF EXISTS cutover_mode;
