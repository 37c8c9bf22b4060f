-- pgbench -M prepared script: the statements the service sends for a PUT of one credential,
-- today (scripts/bench/capture.sh checks that they still match): one transaction that reads the
-- user's rows (the service plans the update on them), applies the compare-and-set UPDATE of one
-- row (RETURNING the new row, which is all the answer needs) and inserts the audit event.
-- The UPDATE rewrites the last row the read returned (\aset keeps the last row's columns) with
-- the version it read, like the service's compare-and-set. When another client changed that row
-- in between, it matches no row (the service would re-plan instead); scripts/bench/run.sh
-- counts those from the versions and reports them. Variables: minuid, maxuid, and the values of
-- scripts/bench/pgbench/values.sh.
\set uid random(:minuid, :maxuid)
BEGIN;
SELECT "user_broker_credentials"."id", "user_broker_credentials"."user_id", "user_broker_credentials"."broker", "user_broker_credentials"."label", "user_broker_credentials"."api_key_encrypted", "user_broker_credentials"."api_secret_encrypted", "user_broker_credentials"."key_id", "user_broker_credentials"."binding", "user_broker_credentials"."version", "user_broker_credentials"."last_test_status", "user_broker_credentials"."last_tested_at", "user_broker_credentials"."created_at", "user_broker_credentials"."updated_at", "user_broker_credentials"."trading_enabled" FROM "user_broker_credentials" WHERE ("user_broker_credentials"."user_id" = :uid) \aset r_
\set next_version :r_version + 1
UPDATE "user_broker_credentials" SET "api_key_encrypted" = :r_api_key_encrypted, "api_secret_encrypted" = :sealed_secret, "key_id" = :r_key_id, "binding" = :binding, "version" = :next_version, "updated_at" = :now, "last_test_status" = NULL, "last_tested_at" = NULL, "trading_enabled" = :r_trading_enabled WHERE ((("user_broker_credentials"."user_id" = :uid) AND ("user_broker_credentials"."broker" = :r_broker)) AND ("user_broker_credentials"."version" = :r_version)) RETURNING "user_broker_credentials"."id", "user_broker_credentials"."user_id", "user_broker_credentials"."broker", "user_broker_credentials"."label", "user_broker_credentials"."api_key_encrypted", "user_broker_credentials"."api_secret_encrypted", "user_broker_credentials"."key_id", "user_broker_credentials"."binding", "user_broker_credentials"."version", "user_broker_credentials"."last_test_status", "user_broker_credentials"."last_tested_at", "user_broker_credentials"."created_at", "user_broker_credentials"."updated_at", "user_broker_credentials"."trading_enabled";
INSERT INTO "credential_audit_events" ("occurred_at", "actor_id", "target_user_id", "action", "broker", "outcome", "key_id", "request_id", "actor_service", "detail") VALUES (:now, :uid, :uid, :action, :r_broker, :outcome, :r_key_id, :request_id, DEFAULT, DEFAULT);
COMMIT;
