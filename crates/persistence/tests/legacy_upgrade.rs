//! A PostgreSQL database as the Python service leaves it (`testdata/legacy`) is upgraded in place
//! by our migrations: no row lost, every credential still decrypts, and the repositories read the
//! legacy rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use diesel::connection::SimpleConnection;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::{json, Value};
use user_service_domain::ports::{
    CredentialRepository, CutoverRepository, PreferenceRepository, UserRepository,
};
use user_service_domain::{CutoverMode, KeyId, UserId};
use user_service_persistence::Database;

use support::{postgres_empty, test_settings, write, ApplyExt};

const SCHEMA: &str = include_str!("../../../testdata/legacy/legacy-schema.postgres.sql");
const DATA: &str = include_str!("../../../testdata/legacy/legacy-data.postgres.sql");
const KEY: &str = include_str!("../../../testdata/legacy/legacy-key.txt");
const PLAINTEXTS: &str = include_str!("../../../testdata/legacy/legacy-plaintexts.json");

#[derive(QueryableByName, Debug, PartialEq)]
struct Column {
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

fn column(conn: &mut PgConnection, table: &str, column: &str) -> Column {
    diesel::sql_query(
        "SELECT data_type::text AS data_type, is_nullable::text AS is_nullable \
         FROM information_schema.columns WHERE table_name = $1 AND column_name = $2",
    )
    .bind::<Text, _>(table)
    .bind::<Text, _>(column)
    .get_result(conn)
    .unwrap_or_else(|e| panic!("{table}.{column}: {e}"))
}

fn scalar(conn: &mut PgConnection, query: &str) -> i64 {
    diesel::select(sql::<BigInt>(&format!("({query})")))
        .get_result(conn)
        .unwrap_or_else(|e| panic!("{query}: {e}"))
}

fn count(conn: &mut PgConnection, table: &str) -> i64 {
    scalar(conn, &format!("SELECT COUNT(*) FROM {table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_database_is_upgraded_in_place() {
    let Some(scratch) = postgres_empty() else {
        return;
    };
    let url = scratch.url.clone();
    let mut conn = PgConnection::establish(&url).unwrap();
    conn.batch_execute(SCHEMA).unwrap();
    conn.batch_execute(DATA).unwrap();

    let db = Database::connect(&url, &test_settings()).await.unwrap();
    let applied = db.run_migrations().await.unwrap();
    assert!(!applied.is_empty());
    assert!(
        db.run_migrations().await.unwrap().is_empty(),
        "nothing left to apply"
    );
    // The Python service's rows stay readable until an operator closes cut-over.
    assert_eq!(
        db.cutover().state().await.unwrap().mode,
        CutoverMode::Open,
        "a database upgraded from the Python schema starts in cut-over mode"
    );

    // No row lost, the Python service's other tables untouched.
    for (table, rows) in [
        ("users", 2),
        ("user_preferences", 1),
        ("user_broker_credentials", 3),
        ("alembic_version", 1),
        ("roles", 0),
        ("user_roles", 0),
        ("mfa_totp", 0),
        ("onboarding_progress", 0),
        ("user_capabilities", 0),
        ("credential_audit_events", 0),
    ] {
        assert_eq!(count(&mut conn, table), rows, "{table}");
    }

    // Column types as docs/contract.md#storage and docs/persistence.md say.
    let bigint = |nullable: &str| Column {
        data_type: "bigint".into(),
        is_nullable: nullable.into(),
    };
    let text = |nullable: &str| Column {
        data_type: "text".into(),
        is_nullable: nullable.into(),
    };
    assert_eq!(column(&mut conn, "users", "id"), bigint("NO"));
    assert_eq!(
        column(&mut conn, "users", "password_hash").is_nullable,
        "YES"
    );
    assert_eq!(
        column(&mut conn, "user_preferences", "user_id"),
        bigint("NO")
    );
    assert_eq!(
        column(&mut conn, "user_broker_credentials", "id"),
        bigint("NO")
    );
    assert_eq!(
        column(&mut conn, "user_broker_credentials", "user_id"),
        bigint("NO")
    );
    assert_eq!(
        column(&mut conn, "user_broker_credentials", "version"),
        bigint("NO")
    );
    assert_eq!(
        column(&mut conn, "user_broker_credentials", "api_key_encrypted"),
        text("YES")
    );
    assert_eq!(
        column(&mut conn, "user_broker_credentials", "api_secret_encrypted"),
        text("YES")
    );
    assert_eq!(
        column(&mut conn, "user_broker_credentials", "binding"),
        text("YES")
    );
    for added in ["label", "key_id", "last_test_status"] {
        let col = column(&mut conn, "user_broker_credentials", added);
        assert_eq!(
            (col.data_type.as_str(), col.is_nullable.as_str()),
            ("character varying", "YES"),
            "{added}"
        );
    }
    assert_eq!(
        column(&mut conn, "user_broker_credentials", "last_tested_at").data_type,
        "timestamp with time zone"
    );
    assert_eq!(
        scalar(
            &mut conn,
            "SELECT COUNT(*) FROM pg_constraint WHERE conname = 'uq_user_broker_credentials'"
        ),
        1
    );
    // The sequences behind the widened ids are BIGINT too, and carry on from the Python rows.
    for table in ["users", "user_broker_credentials"] {
        assert_eq!(
            scalar(
                &mut conn,
                &format!(
                    "SELECT COUNT(*) FROM pg_sequence WHERE seqrelid = \
                     pg_get_serial_sequence('{table}', 'id')::regclass AND seqtypid = 'bigint'::regtype"
                )
            ),
            1,
            "{table}"
        );
    }

    // Every credential decrypts, with the Python key, to its plaintext.
    let fernet = fernet::Fernet::new(KEY.trim()).unwrap();
    let expected: Value = serde_json::from_str(PLAINTEXTS).unwrap();
    let rows: Vec<(i64, Option<String>, Option<String>)> = {
        use user_service_persistence::schema::user_broker_credentials as ubc;
        ubc::table
            .order(ubc::id)
            .select((ubc::id, ubc::api_key_encrypted, ubc::api_secret_encrypted))
            .load(&mut conn)
            .unwrap()
    };
    let open = |token: &Option<String>| {
        token
            .as_ref()
            .map(|t| String::from_utf8(fernet.decrypt(t).unwrap()).unwrap())
    };
    let decrypted: Vec<Value> = rows
        .iter()
        .map(
            |(id, key, secret)| json!({"id": id, "api_key": open(key), "api_secret": open(secret)}),
        )
        .collect();
    let wanted: Vec<Value> = expected
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!({"id": e["id"], "api_key": e["api_key"], "api_secret": e["api_secret"]}))
        .collect();
    assert_eq!(decrypted, wanted);

    // The repositories read the legacy rows.
    let ada = db.users().get(UserId(1)).await.unwrap();
    assert_eq!(ada.email.as_str(), "trader.one@example.com");
    assert_eq!(ada.first_name.as_deref(), Some("Ada"));
    assert!(db.users().password_hash(UserId(1)).await.unwrap().is_some());
    assert_eq!(
        db.preferences().get(UserId(1)).await.unwrap(),
        json!({"theme": "dark", "currency": "EUR"})
    );
    assert_eq!(db.preferences().get(UserId(2)).await.unwrap(), json!({}));
    let stored = db.credentials().list(UserId(1)).await.unwrap();
    assert_eq!(
        stored.iter().map(|r| r.broker.as_str()).collect::<Vec<_>>(),
        ["binance", "ibkr"]
    );
    for row in &stored {
        assert_eq!(
            (row.key_id.as_ref(), row.binding.as_ref(), row.version),
            (None, None, 1)
        );
        assert_eq!(row.last_test_status, None);
    }
    let kraken = &db.credentials().list(UserId(2)).await.unwrap()[0];
    assert_eq!(kraken.api_secret_encrypted, None);
    assert_eq!(
        db.credentials().count_by_key_id().await.unwrap(),
        [(None::<KeyId>, 3)]
    );

    // Our writes work on legacy rows (compare-and-set from version 1) ...
    let rows = db
        .credentials()
        .apply_one(
            UserId(1),
            write("binance", Some(1), Some("gAAAAAnew"), None),
        )
        .await
        .unwrap();
    assert_eq!(rows[0].version, 2);

    // ... and so do the Python service's INSERTs, which know none of the new columns.
    conn.batch_execute(
        "INSERT INTO users (email, password_hash) VALUES ('trader.three@example.com', 'x');
         INSERT INTO user_broker_credentials (user_id, broker, api_key_encrypted, api_secret_encrypted)
             VALUES (2, 'binance', 'gAAAAApython', NULL);
         INSERT INTO user_preferences (user_id) VALUES (2);",
    )
    .unwrap();
    let three = db
        .users()
        .find_by_email(&user_service_domain::Email::parse("trader.three@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(three.id, UserId(3), "the identity sequence carried on");
    let python_row = db
        .credentials()
        .list(UserId(2))
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.broker.as_str() == "binance")
        .unwrap();
    assert_eq!((python_row.id, python_row.version), (4, 1));
}
