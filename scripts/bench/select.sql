\set uid random(1, :users)
SELECT id, user_id, broker, label, api_key_encrypted, api_secret_encrypted, key_id, binding, version,
       last_test_status, last_tested_at, created_at, updated_at
  FROM user_broker_credentials WHERE user_id = :uid ORDER BY broker;
