DROP TRIGGER IF EXISTS trg_user_broker_credentials_foreign_write ON user_broker_credentials;
DROP FUNCTION IF EXISTS user_broker_credentials_foreign_write();
