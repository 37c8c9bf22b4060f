-- pgbench -M prepared script: the service's list query, as the service sends it (diesel's text,
-- rows sorted by the service, not the database). scripts/bench/capture.sh checks that the two
-- still match. Variables: minuid, maxuid (the seeded users' id range).
\set uid random(:minuid, :maxuid)
SELECT "user_broker_credentials"."id", "user_broker_credentials"."user_id", "user_broker_credentials"."broker", "user_broker_credentials"."label", "user_broker_credentials"."api_key_encrypted", "user_broker_credentials"."api_secret_encrypted", "user_broker_credentials"."key_id", "user_broker_credentials"."binding", "user_broker_credentials"."version", "user_broker_credentials"."last_test_status", "user_broker_credentials"."last_tested_at", "user_broker_credentials"."created_at", "user_broker_credentials"."updated_at", "user_broker_credentials"."trading_enabled" FROM "user_broker_credentials" WHERE ("user_broker_credentials"."user_id" = :uid);
