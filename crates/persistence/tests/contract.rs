//! The repository contract, run against real SQLite and real PostgreSQL: every test in
//! `contract` runs once per backend (modules `sqlite` and `postgres` at the bottom).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

/// The tests, written once against `TestDb`.
mod contract {
    use std::sync::Arc;

    use diesel::prelude::*;
    use secrecy::{ExposeSecret, SecretString};
    use serde_json::json;
    use user_service_domain::cutover::DATABASE_WIDE;
    use user_service_domain::ports::{
        AuditRepository, CapabilityRepository, CredentialMutation, CredentialRepository,
        CutoverRepository, ModeChange, OnboardingRepository, PreferenceRepository,
        SessionRepository, SystemClock, ThrottleRepository, UserRepository,
    };
    use user_service_domain::{
        AuditAction, AuditEvent, Capability, CredentialService, CredentialUpdate, CutoverMode,
        Email, KeyId, NewSession, NewUser, OnboardingProgress, Page, PlainSecret, RepositoryError,
        RequestContext, SecretInput, SessionState, Unique, UserId, UserPatch,
    };
    use user_service_persistence::schema::{
        onboarding_progress, user_broker_credentials, user_capabilities, user_preferences, users,
    };

    use user_service_test_support::cipher::TestCipher;

    use crate::support::{ann_with_binance, at, broker, create_user, write, ApplyExt, TestDb};

    fn count_rows_of(t: &TestDb, user: UserId) -> [i64; 4] {
        t.with_connection(|c| {
            Ok([
                user_broker_credentials::table
                    .filter(user_broker_credentials::user_id.eq(user.0))
                    .count()
                    .get_result(c)?,
                user_preferences::table
                    .filter(user_preferences::user_id.eq(user.0))
                    .count()
                    .get_result(c)?,
                onboarding_progress::table
                    .filter(onboarding_progress::user_id.eq(user.0))
                    .count()
                    .get_result(c)?,
                user_capabilities::table
                    .filter(user_capabilities::user_id.eq(user.0))
                    .count()
                    .get_result(c)?,
            ])
        })
        .unwrap()
    }

    // --- migrations and connections ----------------------------------------------------------

    pub async fn migrations_revert_and_apply_again(t: &TestDb) {
        let user = create_user(&t.db, "ann").await;
        assert!(t.db.pending_migrations().await.unwrap().is_empty());
        let reverted = t.db.revert_all_migrations().await.unwrap();
        assert!(!reverted.is_empty());
        assert!(
            t.db.users().get(user).await.is_err(),
            "the users table is gone after reverting"
        );
        assert_eq!(
            t.db.pending_migrations().await.unwrap().len(),
            reverted.len()
        );
        assert_eq!(t.db.run_migrations().await.unwrap().len(), reverted.len());
        assert_eq!(t.db.users().get(user).await, Err(RepositoryError::NotFound));
        let again = create_user(&t.db, "ann").await;
        assert_eq!(
            t.db.users().get(again).await.unwrap().email.as_str(),
            "ann@example.com"
        );
        assert!(
            t.db.run_migrations().await.unwrap().is_empty(),
            "idempotent"
        );
    }

    pub async fn ping_answers(t: &TestDb) {
        t.db.ping().await.unwrap();
        assert!(t.db.pool_status().connections >= 1);
    }

    // --- users ---------------------------------------------------------------------------------

    pub async fn created_user_is_found_by_id_and_email(t: &TestDb) {
        let users = t.db.users();
        let new = NewUser {
            id: None,
            email: Email::parse("Ann@Example.com").unwrap(),
            first_name: Some("Ann".into()),
            last_name: Some("Lee".into()),
            phone: Some("+33100000000".into()),
            marketing_opt_in: true,
            is_active: true,
        };
        let created = users.create(&new, None).await.unwrap();
        assert_eq!(created.email.as_str(), "ann@example.com");
        assert_eq!(created.first_name.as_deref(), Some("Ann"));
        assert!(created.marketing_opt_in && created.is_active && !created.is_superuser);
        assert_eq!(users.get(created.id).await.unwrap(), created);
        assert_eq!(
            users.find_by_email(&new.email).await.unwrap(),
            Some(created.clone())
        );
        assert_eq!(
            users
                .find_by_email(&Email::parse("nobody@example.com").unwrap())
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            users.get(UserId(created.id.0 + 1000)).await,
            Err(RepositoryError::NotFound)
        );
    }

    pub async fn taken_email_is_a_conflict(t: &TestDb) {
        let users = t.db.users();
        create_user(&t.db, "ann").await;
        let bob = create_user(&t.db, "bob").await;
        let again = users
            .create(
                &NewUser::with_email(Email::parse("ann@example.com").unwrap()),
                None,
            )
            .await;
        assert!(
            matches!(again, Err(RepositoryError::Duplicate(Unique::Email))),
            "{again:?}"
        );
        let patch = UserPatch {
            email: Some(Email::parse("ann@example.com").unwrap()),
            ..UserPatch::default()
        };
        assert!(matches!(
            users.update(bob, &patch).await,
            Err(RepositoryError::Duplicate(Unique::Email))
        ));
        assert_eq!(
            users.get(bob).await.unwrap().email.as_str(),
            "bob@example.com"
        );
    }

    pub async fn patch_sets_clears_and_keeps_fields(t: &TestDb) {
        let users = t.db.users();
        let id = create_user(&t.db, "ann").await;
        let before = users.get(id).await.unwrap();
        let set = UserPatch {
            first_name: Some(Some("Ann".into())),
            phone: Some(Some("123".into())),
            is_active: Some(true),
            ..UserPatch::default()
        };
        let after = users.update(id, &set).await.unwrap();
        assert_eq!(after.first_name.as_deref(), Some("Ann"));
        assert_eq!(after.phone.as_deref(), Some("123"));
        assert!(after.is_active);
        assert!(after.updated_at >= before.updated_at);
        let clear = UserPatch {
            phone: Some(None),
            email: Some(Email::parse("ann.lee@example.com").unwrap()),
            ..UserPatch::default()
        };
        let after = users.update(id, &clear).await.unwrap();
        assert_eq!(after.phone, None);
        assert_eq!(
            after.first_name.as_deref(),
            Some("Ann"),
            "absent field kept"
        );
        assert_eq!(after.email.as_str(), "ann.lee@example.com");
        assert_eq!(users.get(id).await.unwrap(), after);
        assert_eq!(
            users
                .update(UserId(id.0 + 1000), &UserPatch::default())
                .await,
            Err(RepositoryError::NotFound)
        );
    }

    pub async fn soft_deleted_user_is_hidden(t: &TestDb) {
        let users = t.db.users();
        let ann = create_user(&t.db, "ann").await;
        let bob = create_user(&t.db, "bob").await;
        let creds = t.db.credentials();
        creds
            .apply_writes(
                ann,
                [
                    write("binance", None, Some("k"), None),
                    write("kraken", None, Some("k"), None),
                ],
            )
            .await
            .unwrap();
        let event = AuditEvent {
            occurred_at: at(9),
            actor_id: Some(ann),
            target_user_id: ann,
            action: AuditAction::Delete,
            broker: None,
            outcome: "account_deleted".into(),
            key_id: None,
            request_id: Some("req-del".into()),
            actor_service: None,
            detail: None,
        };
        assert_eq!(users.soft_delete(ann, &event).await.unwrap(), 2);
        // The keys went with the account, each deletion recorded in the same transaction.
        assert!(creds.list(ann).await.unwrap().is_empty());
        let (events, _) = t.db.audit().list(ann, Page::default()).await.unwrap();
        let mut brokers: Vec<_> = events.iter().filter_map(|e| e.broker.clone()).collect();
        brokers.sort();
        assert_eq!(brokers, ["binance", "kraken"]);
        assert_eq!(users.get(ann).await, Err(RepositoryError::NotFound));
        assert_eq!(
            users
                .find_by_email(&Email::parse("ann@example.com").unwrap())
                .await
                .unwrap(),
            None
        );
        let (items, total) = users.list(Page::default()).await.unwrap();
        assert_eq!(total, 1);
        assert_eq!(items.iter().map(|u| u.id).collect::<Vec<_>>(), [bob]);
        assert_eq!(
            users.soft_delete(ann, &event).await,
            Err(RepositoryError::NotFound)
        );
        assert_eq!(
            users.update(ann, &UserPatch::default()).await,
            Err(RepositoryError::NotFound)
        );
        assert_eq!(
            users.password_hash(ann).await.map(|_| ()),
            Err(RepositoryError::NotFound)
        );
        // The row is still there (soft delete).
        let stored: i64 = t
            .with_connection(|c| {
                users::table
                    .filter(users::id.eq(ann.0))
                    .count()
                    .get_result(c)
            })
            .unwrap();
        assert_eq!(stored, 1);
    }

    pub async fn users_are_listed_by_page_with_total(t: &TestDb) {
        let users = t.db.users();
        let mut ids: Vec<UserId> = Vec::new();
        for i in 0..7 {
            ids.push(create_user(&t.db, &format!("u{i}")).await);
        }
        let (first, total) = users
            .list(Page::new(Some(3), Some(0)).unwrap())
            .await
            .unwrap();
        assert_eq!(total, 7);
        assert_eq!(first.iter().map(|u| u.id).collect::<Vec<_>>(), ids[0..3]);
        let (last, total) = users
            .list(Page::new(Some(3), Some(6)).unwrap())
            .await
            .unwrap();
        assert_eq!(total, 7);
        assert_eq!(last.iter().map(|u| u.id).collect::<Vec<_>>(), ids[6..7]);
        let (none, _) = users
            .list(Page::new(Some(3), Some(i64::MAX as u64)).unwrap())
            .await
            .unwrap();
        assert!(none.is_empty());
    }

    /// The password hash stored for `user`, which must have one.
    async fn stored_hash(t: &TestDb, user: UserId) -> String {
        let hash = t.db.users().password_hash(user).await.unwrap().unwrap();
        hash.expose_secret().to_owned()
    }

    pub async fn password_hash_is_stored_and_replaced(t: &TestDb) {
        let users = t.db.users();
        let without = create_user(&t.db, "ann").await;
        assert!(users.password_hash(without).await.unwrap().is_none());
        let with = users
            .create(
                &NewUser::with_email(Email::parse("bob@example.com").unwrap()),
                Some(SecretString::from("$argon2id$v=19$first")),
            )
            .await
            .unwrap()
            .id;
        assert_eq!(stored_hash(t, with).await, "$argon2id$v=19$first");
        users
            .set_password_hash(with, SecretString::from("$argon2id$v=19$second"))
            .await
            .unwrap();
        assert_eq!(stored_hash(t, with).await, "$argon2id$v=19$second");
        assert_eq!(
            users
                .set_password_hash(UserId(with.0 + 1000), SecretString::from("x"))
                .await,
            Err(RepositoryError::NotFound)
        );
    }

    // --- preferences, onboarding, capabilities ---------------------------------------------------

    pub async fn preferences_default_to_an_empty_object_and_round_trip(t: &TestDb) {
        let prefs = t.db.preferences();
        let user = create_user(&t.db, "ann").await;
        assert_eq!(prefs.get(user).await.unwrap(), json!({}));
        let value = json!({"theme": "dark", "currency": "EUR", "nested": {"list": [1, 2.5, null, true]}, "é": "日本"});
        assert_eq!(prefs.put(user, &value).await.unwrap(), value);
        assert_eq!(prefs.get(user).await.unwrap(), value);
        let replaced = json!({"theme": "light"});
        prefs.put(user, &replaced).await.unwrap();
        assert_eq!(prefs.get(user).await.unwrap(), replaced);
        assert!(
            prefs.put(user, &json!([1, 2])).await.is_err(),
            "not an object"
        );
        assert_eq!(
            prefs.put(UserId(user.0 + 1000), &json!({})).await,
            Err(RepositoryError::NotFound),
            "unknown user"
        );
    }

    pub async fn onboarding_progress_round_trips(t: &TestDb) {
        let onboarding = t.db.onboarding();
        let user = create_user(&t.db, "ann").await;
        assert_eq!(onboarding.get(user).await.unwrap(), None);
        let mut progress = OnboardingProgress::start();
        progress.complete("api-keys").unwrap();
        progress.updated_at = Some(at(10));
        onboarding.save(user, &progress).await.unwrap();
        assert_eq!(onboarding.get(user).await.unwrap(), Some(progress.clone()));
        progress.complete("account-profile").unwrap();
        progress.restarted_at = Some(at(20));
        progress.updated_at = Some(at(30));
        onboarding.save(user, &progress).await.unwrap();
        let stored = onboarding.get(user).await.unwrap().unwrap();
        assert_eq!(stored, progress);
        assert_eq!(stored.completed_steps, ["account-profile", "api-keys"]);
        assert_eq!(stored.current_step, "execution-mode");
    }

    pub async fn capabilities_are_granted_and_revoked(t: &TestDb) {
        let caps = t.db.capabilities();
        let user = create_user(&t.db, "ann").await;
        assert!(caps.overrides(user).await.unwrap().is_empty());
        caps.set(user, &Capability::manage_users(), true)
            .await
            .unwrap();
        caps.set(user, &Capability::use_users(), false)
            .await
            .unwrap();
        assert_eq!(
            caps.overrides(user).await.unwrap(),
            [
                (Capability::manage_users(), true),
                (Capability::use_users(), false)
            ]
        );
        caps.set(user, &Capability::manage_users(), false)
            .await
            .unwrap();
        assert_eq!(
            caps.overrides(user).await.unwrap()[0],
            (Capability::manage_users(), false)
        );
        assert_eq!(caps.overrides(user).await.unwrap().len(), 2);
    }

    // --- audit -------------------------------------------------------------------------------------

    pub async fn audited_changes_commit_their_events_together(t: &TestDb) {
        let creds = t.db.credentials();
        let audit = t.db.audit();
        let user = create_user(&t.db, "ann").await;
        let event = |broker: &str| AuditEvent {
            occurred_at: at(7),
            actor_id: Some(user),
            target_user_id: user,
            action: AuditAction::Write,
            broker: Some(broker.into()),
            outcome: "success".into(),
            key_id: Some(KeyId::new("k1")),
            request_id: Some("req-a".into()),
            actor_service: None,
            detail: None,
        };
        let rows = creds
            .apply_audited(
                user,
                &[
                    CredentialMutation::Write(write("binance", None, Some("a1"), None)),
                    CredentialMutation::Write(write("kraken", None, Some("a2"), None)),
                ],
                &[event("binance"), event("kraken")],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        let (events, total) = audit.list(user, Page::default()).await.unwrap();
        assert_eq!(total, 2);
        assert!(events.contains(&event("binance")) && events.contains(&event("kraken")));

        // A lost compare-and-set changes nothing and records nothing.
        let lost = creds
            .apply_audited(
                user,
                &[CredentialMutation::Write(write(
                    "binance",
                    None,
                    Some("again"),
                    None,
                ))],
                &[event("binance")],
            )
            .await;
        assert!(
            matches!(lost, Err(RepositoryError::StaleVersion)),
            "{lost:?}"
        );
        assert_eq!(audit.list(user, Page::default()).await.unwrap().1, 2);
        assert_eq!(
            creds.list(user).await.unwrap()[0]
                .api_key_encrypted
                .as_deref(),
            Some("a1")
        );
    }

    pub async fn audit_events_are_listed_newest_first_by_page(t: &TestDb) {
        let audit = t.db.audit();
        let user = create_user(&t.db, "ann").await;
        let other = create_user(&t.db, "bob").await;
        let event = |seconds: i64, action: AuditAction| AuditEvent {
            occurred_at: at(seconds),
            actor_id: Some(other),
            target_user_id: user,
            action,
            broker: Some("binance".into()),
            outcome: "success".into(),
            key_id: Some(KeyId::new("k1")),
            request_id: Some(format!("req-{seconds}")),
            actor_service: None,
            detail: None,
        };
        for (seconds, action) in [
            (1, AuditAction::Write),
            (3, AuditAction::OperatorRead),
            (2, AuditAction::Delete),
            (4, AuditAction::Test),
        ] {
            audit.record(&event(seconds, action)).await.unwrap();
        }
        audit
            .record(&AuditEvent {
                actor_id: None,
                broker: None,
                key_id: None,
                request_id: Some("r".repeat(1000)),
                actor_service: None,
                detail: None,
                target_user_id: other,
                ..event(5, AuditAction::Rotate)
            })
            .await
            .unwrap();
        let (page, total) = audit
            .list(user, Page::new(Some(2), Some(0)).unwrap())
            .await
            .unwrap();
        assert_eq!(total, 4);
        assert_eq!(
            page,
            [
                event(4, AuditAction::Test),
                event(3, AuditAction::OperatorRead)
            ]
        );
        let (page, _) = audit
            .list(user, Page::new(Some(2), Some(2)).unwrap())
            .await
            .unwrap();
        assert_eq!(
            page,
            [event(2, AuditAction::Delete), event(1, AuditAction::Write)]
        );
        let (others, total) = audit.list(other, Page::default()).await.unwrap();
        assert_eq!(total, 1);
        assert_eq!(others[0].actor_id, None);
        assert_eq!(
            others[0].request_id.as_ref().unwrap().len(),
            255,
            "long ids are cut"
        );
    }

    // --- credentials -----------------------------------------------------------------------------

    pub async fn new_user_has_no_credentials(t: &TestDb) {
        let user = create_user(&t.db, "ann").await;
        assert!(t.db.credentials().list(user).await.unwrap().is_empty());
    }

    pub async fn apply_inserts_and_lists_rows_by_broker(t: &TestDb) {
        let creds = t.db.credentials();
        let user = create_user(&t.db, "ann").await;
        let other = create_user(&t.db, "bob").await;
        let rows = creds
            .apply_writes(
                user,
                [
                    write("kraken", None, Some("tk"), None),
                    write("binance", None, Some("bk"), Some("bs")),
                    write("interactive-brokers", None, None, Some("is")),
                ],
            )
            .await
            .unwrap();
        creds
            .apply_one(other, write("binance", None, Some("ok"), None))
            .await
            .unwrap();
        let brokers: Vec<_> = rows.iter().map(|r| r.broker.as_str().to_owned()).collect();
        assert_eq!(brokers, ["binance", "interactive-brokers", "kraken"]);
        let binance = &rows[0];
        assert_eq!(binance.user_id, user);
        assert_eq!(binance.api_key_encrypted.as_deref(), Some("bk"));
        assert_eq!(binance.api_secret_encrypted.as_deref(), Some("bs"));
        assert_eq!(binance.key_id, Some(KeyId::new("k1")));
        assert_eq!(binance.binding.as_deref(), Some("bind-binance-1"));
        assert_eq!(binance.version, 1);
        assert_eq!(binance.label, None);
        assert_eq!(binance.last_test_status, None);
        assert_eq!(binance.created_at, at(0));
        assert_eq!(binance.updated_at, at(0));
        assert_eq!(creds.list(user).await.unwrap(), rows);
        assert_eq!(creds.list(other).await.unwrap().len(), 1);
    }

    pub async fn write_with_the_current_version_updates_and_resets_the_test(t: &TestDb) {
        let (creds, user, _) = ann_with_binance(&t.db, "k1", Some("s1")).await;
        assert!(creds
            .record_test(user, &broker("binance"), "ok", at(5))
            .await
            .unwrap());
        let tested = &creds.list(user).await.unwrap()[0];
        assert_eq!(tested.last_test_status.as_deref(), Some("ok"));
        assert_eq!(tested.last_tested_at, Some(at(5)));
        assert_eq!(tested.version, 1, "a test is not a write");

        let rows = creds
            .apply_one(user, write("binance", Some(1), None, Some("s2")))
            .await
            .unwrap();
        let row = &rows[0];
        assert_eq!(row.version, 2);
        assert_eq!(row.api_key_encrypted, None);
        assert_eq!(row.api_secret_encrypted.as_deref(), Some("s2"));
        assert_eq!(row.binding.as_deref(), Some("bind-binance-2"));
        assert_eq!(row.last_test_status, None);
        assert_eq!(row.last_tested_at, None);
        assert_eq!(row.updated_at, at(1));
        assert_eq!(row.created_at, at(0));
        assert_eq!(row.id, tested.id);
    }

    pub async fn stale_or_duplicate_writes_conflict_and_change_nothing(t: &TestDb) {
        let creds = t.db.credentials();
        let user = create_user(&t.db, "ann").await;
        let before = creds
            .apply_writes(
                user,
                [
                    write("binance", None, Some("k1"), None),
                    write("kraken", None, Some("k2"), None),
                ],
            )
            .await
            .unwrap();
        // Each of these fails on its last mutation; the earlier ones must be rolled back.
        let failing: [&[CredentialMutation]; 3] = [
            &[
                CredentialMutation::Write(write("kraken", Some(1), Some("new"), None)),
                CredentialMutation::Write(write("ibkr", None, Some("new"), None)),
                CredentialMutation::Write(write("binance", Some(7), Some("stale"), None)),
            ],
            &[
                CredentialMutation::Delete {
                    broker: broker("kraken"),
                    expected_version: 1,
                },
                CredentialMutation::Write(write("binance", None, Some("exists"), None)),
            ],
            &[
                CredentialMutation::Write(write("ibkr", None, Some("new"), None)),
                CredentialMutation::Delete {
                    broker: broker("binance"),
                    expected_version: 2,
                },
            ],
        ];
        for mutations in failing {
            let outcome = creds.apply(user, mutations).await;
            assert!(
                matches!(outcome, Err(RepositoryError::StaleVersion)),
                "{outcome:?}"
            );
            assert_eq!(creds.list(user).await.unwrap(), before, "nothing changed");
        }
    }

    pub async fn delete_with_the_current_version_removes_the_row(t: &TestDb) {
        let creds = t.db.credentials();
        let user = create_user(&t.db, "ann").await;
        creds
            .apply_writes(
                user,
                [
                    write("binance", None, Some("k"), None),
                    write("kraken", None, Some("k"), None),
                ],
            )
            .await
            .unwrap();
        let rows = creds
            .apply(
                user,
                &[CredentialMutation::Delete {
                    broker: broker("binance"),
                    expected_version: 1,
                }],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].broker.as_str(), "kraken");
    }

    pub async fn unconditional_delete_reports_whether_a_row_existed(t: &TestDb) {
        let (creds, user, _) = ann_with_binance(&t.db, "k", None).await;
        creds
            .apply_one(user, write("binance", Some(1), Some("k2"), None))
            .await
            .unwrap();
        let event = AuditEvent {
            occurred_at: at(5),
            actor_id: Some(user),
            target_user_id: user,
            action: AuditAction::Delete,
            broker: Some("binance".into()),
            outcome: "success".into(),
            key_id: None,
            request_id: Some("req-delete".into()),
            actor_service: None,
            detail: None,
        };
        assert!(creds
            .delete(user, &broker("binance"), &event)
            .await
            .unwrap());
        assert!(!creds
            .delete(user, &broker("binance"), &event)
            .await
            .unwrap());
        assert!(creds.list(user).await.unwrap().is_empty());
        // The event is recorded with the deletion, once: not for the delete that found nothing.
        let (events, total) = t.db.audit().list(user, Page::default()).await.unwrap();
        assert_eq!((total, events), (1, vec![event]));
        assert!(!creds
            .record_test(user, &broker("binance"), "ok", at(1))
            .await
            .unwrap());
    }

    pub async fn user_and_broker_are_unique(t: &TestDb) {
        let (_, user, _) = ann_with_binance(&t.db, "k", None).await;
        // Straight to the table, past the repository's ON CONFLICT clause.
        let duplicate = t.with_connection(|c| {
            diesel::insert_into(user_broker_credentials::table)
                .values((
                    user_broker_credentials::user_id.eq(user.0),
                    user_broker_credentials::broker.eq("binance"),
                ))
                .execute(c)
        });
        assert!(
            matches!(
                duplicate,
                Err(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _
                ))
            ),
            "{duplicate:?}"
        );
    }

    pub async fn hard_deleting_a_user_cascades(t: &TestDb) {
        let user = create_user(&t.db, "ann").await;
        let kept = create_user(&t.db, "bob").await;
        for id in [user, kept] {
            t.db.credentials()
                .apply_one(id, write("binance", None, Some("k"), None))
                .await
                .unwrap();
            t.db.preferences().put(id, &json!({"a": 1})).await.unwrap();
            t.db.onboarding()
                .save(id, &OnboardingProgress::start())
                .await
                .unwrap();
            t.db.capabilities()
                .set(id, &Capability::manage_users(), true)
                .await
                .unwrap();
        }
        assert_eq!(count_rows_of(t, user), [1, 1, 1, 1]);
        let deleted = t
            .with_connection(|c| {
                diesel::delete(users::table.filter(users::id.eq(user.0))).execute(c)
            })
            .unwrap();
        assert_eq!(deleted, 1);
        assert_eq!(count_rows_of(t, user), [0, 0, 0, 0]);
        assert_eq!(count_rows_of(t, kept), [1, 1, 1, 1]);
    }

    pub async fn long_tokens_round_trip(t: &TestDb) {
        let creds = t.db.credentials();
        let user = create_user(&t.db, "ann").await;
        // The Fernet token of a 4096-character secret of 4-byte characters is about 21,900
        // characters; the 5,600-character one of 4096 ASCII characters is the common case.
        let ascii_token = format!("gAAAAA{}", "x".repeat(5_594));
        let wide_token = format!("gAAAAA{}", "y".repeat(21_900));
        let rows = creds
            .apply_one(
                user,
                write("binance", None, Some(&ascii_token), Some(&wide_token)),
            )
            .await
            .unwrap();
        assert_eq!(
            rows[0].api_key_encrypted.as_deref(),
            Some(ascii_token.as_str())
        );
        assert_eq!(
            creds.list(user).await.unwrap()[0]
                .api_secret_encrypted
                .as_deref(),
            Some(wide_token.as_str())
        );
    }

    pub async fn batches_rewrites_and_key_counts_serve_rotation(t: &TestDb) {
        let creds = t.db.credentials();
        let ann = create_user(&t.db, "ann").await;
        let bob = create_user(&t.db, "bob").await;
        creds
            .apply_writes(
                ann,
                [
                    write("binance", None, Some("a1"), None),
                    write("kraken", None, Some("a2"), None),
                ],
            )
            .await
            .unwrap();
        creds
            .apply_one(bob, write("binance", None, Some("b1"), None))
            .await
            .unwrap();
        let first = creds.batch_after(0, 2).await.unwrap();
        assert_eq!(first.len(), 2);
        assert!(first[0].id < first[1].id);
        let rest = creds.batch_after(first[1].id, 2).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert!(creds.batch_after(rest[0].id, 2).await.unwrap().is_empty());

        assert!(creds
            .record_test(ann, &broker("binance"), "ok", at(9))
            .await
            .unwrap());
        let row = creds.list(ann).await.unwrap().remove(0);
        let mut rotated = write("binance", Some(row.version), Some("a1-rotated"), None);
        rotated.key_id = KeyId::new("k2");
        rotated.updated_at = at(1000);
        assert_eq!(
            creds.rewrite(&[(row.id, rotated.clone())]).await.unwrap(),
            [true]
        );
        assert_eq!(
            creds.rewrite(&[(row.id, rotated.clone())]).await.unwrap(),
            [false],
            "version moved on"
        );
        let after = creds.list(ann).await.unwrap().remove(0);
        assert_eq!(after.api_key_encrypted.as_deref(), Some("a1-rotated"));
        assert_eq!(after.key_id, Some(KeyId::new("k2")));
        assert_eq!(after.version, row.version + 1);
        assert_eq!(
            after.updated_at, row.updated_at,
            "rotation is not a user write"
        );
        assert_eq!(after.last_test_status.as_deref(), Some("ok"));
        assert_eq!(after.last_tested_at, Some(at(9)));
        let mut wrong_broker = write("kraken", Some(after.version), Some("x"), None);
        wrong_broker.key_id = KeyId::new("k2");
        assert_eq!(
            creds.rewrite(&[(after.id, wrong_broker)]).await.unwrap(),
            [false]
        );
        assert!(creds
            .rewrite(&[(after.id, write("binance", None, None, None))])
            .await
            .is_err());
        assert_eq!(creds.rewrite(&[]).await.unwrap(), Vec::<bool>::new());

        // A row without a key id, as the Python service writes them during a cut-over.
        open_cutover(t).await;
        t.with_connection(|c| {
            diesel::insert_into(user_broker_credentials::table)
                .values((
                    user_broker_credentials::user_id.eq(bob.0),
                    user_broker_credentials::broker.eq("legacy"),
                    user_broker_credentials::api_key_encrypted.eq("gAAAAAlegacy"),
                ))
                .execute(c)
        })
        .unwrap();
        assert_eq!(
            creds.count_by_key_id().await.unwrap(),
            [
                (None, 1),
                (Some(KeyId::new("k1")), 2),
                (Some(KeyId::new("k2")), 1)
            ]
        );
        let legacy = creds
            .list(bob)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.broker.as_str() == "legacy")
            .unwrap();
        assert_eq!(
            (legacy.version, legacy.key_id, legacy.binding),
            (1, None, None)
        );

        // A batch: each row by its own compare-and-set, answered in order.
        let kraken = creds
            .list(ann)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.broker.as_str() == "kraken")
            .unwrap();
        let mut current = write("legacy", Some(legacy.version), Some("l-rotated"), None);
        current.key_id = KeyId::new("k2");
        let mut stale = write("kraken", Some(kraken.version + 6), Some("k-rotated"), None);
        stale.key_id = KeyId::new("k2");
        assert_eq!(
            creds
                .rewrite(&[(legacy.id, current), (kraken.id, stale)])
                .await
                .unwrap(),
            [true, false]
        );
        assert_eq!(
            creds.count_by_key_id().await.unwrap(),
            [(Some(KeyId::new("k1")), 2), (Some(KeyId::new("k2")), 2)]
        );
    }

    pub async fn a_foreign_writer_that_sets_the_tag_keeps_it(t: &TestDb) {
        open_cutover(t).await;
        let (creds, user, row) = ann_with_binance(&t.db, "k", Some("s")).await;
        // Someone copying another row's ciphertext and tag: the tag stays, to be checked.
        t.with_connection(|c| {
            diesel::update(
                user_broker_credentials::table.filter(user_broker_credentials::id.eq(row.id)),
            )
            .set((
                user_broker_credentials::api_key_encrypted.eq("gAAAAAcopied"),
                user_broker_credentials::binding.eq("v1.copied-tag"),
            ))
            .execute(c)
        })
        .unwrap();
        let after = creds.list(user).await.unwrap().remove(0);
        assert_eq!(after.version, 2);
        assert_eq!(after.binding.as_deref(), Some("v1.copied-tag"));
        assert_eq!(after.key_id, row.key_id);
    }

    pub async fn explicit_user_id_is_kept_and_later_ids_do_not_collide(t: &TestDb) {
        let users = t.db.users();
        let mut platform = NewUser::with_email(Email::parse("platform@example.com").unwrap());
        platform.id = Some(UserId(4242));
        assert_eq!(
            users.create(&platform, None).await.unwrap().id,
            UserId(4242)
        );
        let first = users
            .create(
                &NewUser::with_email(Email::parse("first@example.com").unwrap()),
                None,
            )
            .await
            .unwrap();
        match t.db.backend() {
            // The explicit id did not move the sequence: generated ids go on from where they
            // were.
            user_service_persistence::Backend::Postgres => {
                assert!(first.id.0 < 4242, "{:?}", first.id)
            }
            // SQLite gives the next id after the largest one: it can never collide.
            user_service_persistence::Backend::Sqlite => {
                assert_eq!(first.id, UserId(4243))
            }
        }
        // An explicit id the sequence is about to hand out is skipped when its turn comes.
        let mut taken = NewUser::with_email(Email::parse("taken@example.com").unwrap());
        taken.id = Some(UserId(first.id.0 + 1));
        users.create(&taken, None).await.unwrap();
        let next = users
            .create(
                &NewUser::with_email(Email::parse("next@example.com").unwrap()),
                None,
            )
            .await
            .unwrap();
        assert!(next.id.0 > first.id.0 + 1, "{:?}", next.id);
    }

    pub async fn a_foreign_update_of_ciphertext_unbinds_the_row(t: &TestDb) {
        open_cutover(t).await;
        let (creds, user, row) = ann_with_binance(&t.db, "k", Some("s")).await;
        assert!(creds
            .record_test(user, &broker("binance"), "ok", at(3))
            .await
            .unwrap());
        // What the Python service does: change a ciphertext, knowing nothing of version/binding.
        t.with_connection(|c| {
            diesel::update(
                user_broker_credentials::table.filter(user_broker_credentials::id.eq(row.id)),
            )
            .set(user_broker_credentials::api_key_encrypted.eq("gAAAAApython"))
            .execute(c)
        })
        .unwrap();
        let after = creds.list(user).await.unwrap().remove(0);
        assert_eq!(after.api_key_encrypted.as_deref(), Some("gAAAAApython"));
        assert_eq!(after.api_secret_encrypted.as_deref(), Some("s"));
        assert_eq!(after.version, 2, "the change is visible to compare-and-set");
        assert_eq!((after.key_id, after.binding), (None, None));
        assert_eq!((after.last_test_status, after.last_tested_at), (None, None));
        // A stale writer loses; a fresh one binds the row again.
        assert!(matches!(
            creds
                .apply_one(user, write("binance", Some(1), Some("k2"), None))
                .await,
            Err(RepositoryError::StaleVersion)
        ));
        let rebound = creds
            .apply_one(user, write("binance", Some(2), Some("k2"), None))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(rebound.version, 3);
        assert_eq!(rebound.binding.as_deref(), Some("bind-binance-3"));
        assert_eq!(rebound.key_id, Some(KeyId::new("k1")));
    }

    pub async fn consent_is_written_with_the_test_result_it_keeps_and_a_foreign_write_ends_it(
        t: &TestDb,
    ) {
        open_cutover(t).await;
        let (creds, user, _) = ann_with_binance(&t.db, "k", Some("s")).await;
        assert!(creds
            .record_test(user, &broker("binance"), "ok", at(3))
            .await
            .unwrap());
        // A consent-only write: the halves as they are, the test result carried over.
        let mut consent = write("binance", Some(1), Some("k"), Some("s"));
        consent.trading_enabled = true;
        consent.last_test_status = Some("ok".into());
        consent.last_tested_at = Some(at(3));
        let written = creds.apply_one(user, consent).await.unwrap().remove(0);
        assert!(written.trading_enabled);
        assert_eq!(written.last_test_status.as_deref(), Some("ok"));
        let read = creds.list(user).await.unwrap().remove(0);
        assert!(read.trading_enabled);
        assert_eq!(
            (read.last_test_status.as_deref(), read.last_tested_at),
            (Some("ok"), Some(at(3)))
        );
        // The Python service changing a ciphertext ends the consent given to the old key.
        t.with_connection(|c| {
            diesel::update(
                user_broker_credentials::table.filter(user_broker_credentials::id.eq(read.id)),
            )
            .set(user_broker_credentials::api_secret_encrypted.eq("gAAAAApython"))
            .execute(c)
        })
        .unwrap();
        let after = creds.list(user).await.unwrap().remove(0);
        assert!(!after.trading_enabled);
        assert_eq!(after.binding, None);
    }

    pub async fn signing_audit_events_keep_the_service_and_the_request_line(t: &TestDb) {
        let audit = t.db.audit();
        let user = create_user(&t.db, "ann").await;
        let event = AuditEvent {
            occurred_at: at(1),
            actor_id: None,
            target_user_id: user,
            action: AuditAction::Sign,
            broker: Some("binance".into()),
            outcome: "success".into(),
            key_id: Some(KeyId::new("k1")),
            request_id: Some("req-sign".into()),
            actor_service: Some("order-router".into()),
            detail: Some("POST /api/v3/order".into()),
        };
        audit.record(&event).await.unwrap();
        let (events, total) = audit
            .list(user, Page::new(Some(10), Some(0)).unwrap())
            .await
            .unwrap();
        assert_eq!(total, 1);
        assert_eq!(events, vec![event]);
    }

    // --- sessions ----------------------------------------------------------------------------

    fn session(id: &str, family: &str, user: UserId, days: i64) -> NewSession {
        NewSession {
            id: id.into(),
            family: family.into(),
            user,
            expires_at: chrono::Utc::now() + chrono::Duration::days(days),
        }
    }

    pub async fn sessions_rotate_once_and_revoke_by_family_and_user(t: &TestDb) {
        let store = t.db.sessions();
        let ann = create_user(&t.db, "ann").await;
        let bob = create_user(&t.db, "bob").await;
        assert_eq!(store.get("s1").await.unwrap(), None);
        store.create(&session("s1", "f1", ann, 7)).await.unwrap();
        store.create(&session("t1", "g1", ann, 7)).await.unwrap();
        store.create(&session("b1", "h1", bob, 7)).await.unwrap();
        let stored = store.get("s1").await.unwrap().unwrap();
        assert_eq!((stored.family.as_str(), stored.user), ("f1", ann));
        assert_eq!((stored.replaced_at, stored.revoked_at), (None, None));
        let now = chrono::Utc::now();
        assert_eq!(stored.state(now), SessionState::Live);

        // Rotation succeeds once: the second attempt (a concurrent loser) writes nothing.
        assert!(store
            .rotate("s1", &session("s2", "f1", ann, 7), now)
            .await
            .unwrap());
        assert!(!store
            .rotate("s1", &session("s3", "f1", ann, 7), now)
            .await
            .unwrap());
        assert_eq!(
            store.get("s1").await.unwrap().unwrap().state(now),
            SessionState::Replaced
        );
        assert_eq!(
            store.get("s2").await.unwrap().unwrap().state(now),
            SessionState::Live
        );
        assert_eq!(
            store.get("s3").await.unwrap(),
            None,
            "nothing stored for the loser"
        );
        // An expired session does not rotate.
        store.create(&session("old", "f9", ann, -1)).await.unwrap();
        assert!(!store
            .rotate("old", &session("new", "f9", ann, 7), now)
            .await
            .unwrap());
        assert_eq!(store.get("new").await.unwrap(), None);

        // Revoking a family ends every session of it, once; other families are kept.
        assert_eq!(store.revoke_family("f1", now).await.unwrap(), 2);
        assert_eq!(store.revoke_family("f1", now).await.unwrap(), 0);
        assert_eq!(
            store.get("s2").await.unwrap().unwrap().state(now),
            SessionState::Revoked
        );
        assert!(!store
            .rotate("s2", &session("s4", "f1", ann, 7), now)
            .await
            .unwrap());
        assert_eq!(
            store.get("t1").await.unwrap().unwrap().state(now),
            SessionState::Live
        );

        // Revoking a user's sessions leaves other users' alone.
        assert_eq!(store.revoke_user(ann, now).await.unwrap(), 2, "t1 and old");
        assert_eq!(
            store.get("t1").await.unwrap().unwrap().state(now),
            SessionState::Revoked
        );
        assert_eq!(
            store.get("b1").await.unwrap().unwrap().state(now),
            SessionState::Live
        );

        // A new sign-in of ann sweeps her expired sessions; others stay.
        store.create(&session("t2", "g2", ann, 7)).await.unwrap();
        assert_eq!(store.get("old").await.unwrap(), None, "expired, swept");
        assert!(store.get("t1").await.unwrap().is_some());

        // Sessions go with their user.
        t.with_connection(|c| diesel::delete(users::table.filter(users::id.eq(bob.0))).execute(c))
            .unwrap();
        assert_eq!(store.get("b1").await.unwrap(), None);
    }

    pub async fn concurrent_rotations_of_one_session_let_one_win(t: &TestDb) {
        let store = t.db.sessions();
        let ann = create_user(&t.db, "ann").await;
        store.create(&session("s", "f", ann, 7)).await.unwrap();
        let now = chrono::Utc::now();
        let attempts = (0..6).map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .rotate("s", &session(&format!("next{n}"), "f", ann, 7), now)
                    .await
                    .unwrap()
            })
        });
        let mut won = 0;
        for attempt in attempts.collect::<Vec<_>>() {
            won += usize::from(attempt.await.unwrap());
        }
        assert_eq!(won, 1);
    }

    // --- sign-in throttling --------------------------------------------------------------------

    pub async fn throttle_buckets_admit_a_burst_then_refuse_with_the_wait(t: &TestDb) {
        let store = t.db.throttle();
        let now = chrono::Utc::now();
        for _ in 0..5 {
            assert_eq!(store.admit("a", 5, now).await.unwrap(), None);
        }
        let wait = store
            .admit("a", 5, now)
            .await
            .unwrap()
            .expect("the sixth is refused");
        assert!(
            wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_secs(12),
            "one attempt comes back every 12 s: {wait:?}"
        );
        // Another bucket is independent; a refusal counted nothing.
        assert_eq!(store.admit("b", 5, now).await.unwrap(), None);
        let later = now + chrono::Duration::from_std(wait).unwrap();
        assert_eq!(store.admit("a", 5, later).await.unwrap(), None);
        assert!(store.admit("a", 5, later).await.unwrap().is_some());
        // A minute later the whole burst is back.
        let rested = later + chrono::Duration::seconds(61);
        for _ in 0..5 {
            assert_eq!(store.admit("a", 5, rested).await.unwrap(), None);
        }
    }

    pub async fn concurrent_attempts_take_exactly_the_allowed_slots(t: &TestDb) {
        let store = t.db.throttle();
        let now = chrono::Utc::now();
        let attempts: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.admit("hot", 5, now).await.unwrap().is_none() })
            })
            .collect();
        let mut admitted = 0;
        for attempt in attempts {
            admitted += usize::from(attempt.await.unwrap());
        }
        assert_eq!(admitted, 5);
    }

    // --- cut-over mode ------------------------------------------------------------------------

    async fn open_cutover(t: &TestDb) {
        assert_eq!(
            t.db.cutover().set_mode(CutoverMode::Open).await.unwrap(),
            ModeChange::Changed
        );
    }

    fn raw(t: &TestDb, statement: &str) -> QueryResult<usize> {
        t.with_connection(|c| diesel::sql_query(statement).execute(c))
    }

    pub async fn a_fresh_database_is_closed_and_every_mode_change_is_audited(t: &TestDb) {
        let cutover = t.db.cutover();
        let state = cutover.state().await.unwrap();
        assert_eq!(state.mode, CutoverMode::Closed);
        assert!(state.changed_at.is_some());
        assert_eq!(
            cutover.set_mode(CutoverMode::Closed).await.unwrap(),
            ModeChange::Unchanged
        );
        open_cutover(t).await;
        assert_eq!(cutover.state().await.unwrap().mode, CutoverMode::Open);
        assert_eq!(
            cutover.set_mode(CutoverMode::Open).await.unwrap(),
            ModeChange::Unchanged
        );
        assert_eq!(
            cutover.set_mode(CutoverMode::Closed).await.unwrap(),
            ModeChange::Changed
        );
        // Someone with SQL access opens it behind the service's back: audited all the same.
        raw(t, "UPDATE cutover_mode SET open = TRUE").unwrap();
        assert_eq!(cutover.state().await.unwrap().mode, CutoverMode::Open);
        let (events, total) =
            t.db.audit()
                .list(DATABASE_WIDE, Page::default())
                .await
                .unwrap();
        assert_eq!(total, 3);
        let actions: Vec<_> = events.iter().map(|e| e.action).collect();
        assert_eq!(
            actions,
            [
                AuditAction::CutoverOpen,
                AuditAction::CutoverClose,
                AuditAction::CutoverOpen
            ]
        );
        // Deleting the mode reads as closed; setting it again puts the row back.
        raw(t, "DELETE FROM cutover_mode").unwrap();
        let state = cutover.state().await.unwrap();
        assert_eq!((state.mode, state.changed_at), (CutoverMode::Closed, None));
        open_cutover(t).await;
    }

    pub async fn closing_is_refused_while_a_row_is_unbound(t: &TestDb) {
        let user = create_user(&t.db, "ann").await;
        open_cutover(t).await;
        // What the Python service writes: a row without key id or tag.
        raw(
            t,
            &format!(
                "INSERT INTO user_broker_credentials (user_id, broker, api_key_encrypted) \
                 VALUES ({}, 'binance', 'gAAAAApython')",
                user.0
            ),
        )
        .unwrap();
        let cutover = t.db.cutover();
        assert_eq!(cutover.unbound_rows().await.unwrap(), 1);
        assert_eq!(
            cutover.set_mode(CutoverMode::Closed).await.unwrap(),
            ModeChange::RefusedUnbound(1)
        );
        assert_eq!(cutover.state().await.unwrap().mode, CutoverMode::Open);
        let (_, audited) =
            t.db.audit()
                .list(DATABASE_WIDE, Page::default())
                .await
                .unwrap();
        assert_eq!(
            audited, 1,
            "only the opening: a refused close changes nothing"
        );
        // Bound by a write of ours, the row no longer holds the database open.
        let row = t.db.credentials().list(user).await.unwrap().remove(0);
        t.db.credentials()
            .apply_one(user, write("binance", Some(row.version), Some("k"), None))
            .await
            .unwrap();
        assert_eq!(
            cutover.set_mode(CutoverMode::Closed).await.unwrap(),
            ModeChange::Changed
        );
    }

    pub async fn a_closed_database_refuses_unbound_and_backward_writes(t: &TestDb) {
        let (creds, user, row) = ann_with_binance(&t.db, "k", Some("s")).await;
        let refused = [
            // A writer that does not bind (the Python service, a manual fix).
            format!(
                "UPDATE user_broker_credentials SET api_key_encrypted = 'gAAAAAmoved' WHERE id = {}",
                row.id
            ),
            format!(
                "INSERT INTO user_broker_credentials (user_id, broker, api_secret_encrypted) \
                 VALUES ({}, 'kraken', 'gAAAAAmoved')",
                user.0
            ),
        ];
        for statement in &refused {
            let error = raw(t, statement).unwrap_err().to_string();
            assert!(error.contains("cut-over is closed"), "{statement}: {error}");
        }
        // An older copy of the row put back in place (its tag valid for its old version).
        let next = creds
            .apply_one(user, write("binance", Some(1), Some("k2"), None))
            .await
            .unwrap()
            .remove(0);
        let replay = format!(
            "UPDATE user_broker_credentials SET version = 1, api_key_encrypted = 'k', \
             api_secret_encrypted = 's', binding = '{}' WHERE id = {}",
            row.binding.as_deref().unwrap(),
            row.id
        );
        let error = raw(t, &replay).unwrap_err().to_string();
        assert!(error.contains("version may only increase"), "{error}");
        // Refused while open too: the version rule is not the cut-over's.
        open_cutover(t).await;
        assert!(raw(t, &replay).is_err());
        assert_eq!(creds.list(user).await.unwrap(), vec![next]);
    }

    pub async fn concurrent_writers_never_mix_halves_nor_lose_writes(t: &TestDb) {
        const WRITERS: usize = 50;
        let user = create_user(&t.db, "ann").await;
        let service = CredentialService::new(
            Arc::new(t.db.credentials()),
            Arc::new(t.db.audit()),
            Arc::new(SystemClock),
        );
        // Every writer is its own task on a multi-threaded runtime, all let go at once.
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let tasks: Vec<_> = (0..WRITERS)
            .map(|i| {
                let (service, barrier) = (service.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    let update = CredentialUpdate {
                        broker: broker("binance"),
                        api_key: SecretInput::Set(PlainSecret::new(format!("key-{i}"))),
                        api_secret: SecretInput::Set(PlainSecret::new(format!("secret-{i}"))),
                        trading_enabled: None,
                    };
                    let ctx = RequestContext::new(user, format!("req-{i}"));
                    barrier.wait().await;
                    service.update(&TestCipher, &ctx, user, vec![update]).await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let failures: Vec<_> = outcomes.iter().filter(|o| o.is_err()).collect();
        assert!(failures.is_empty(), "{failures:?}");

        let rows = t.db.credentials().list(user).await.unwrap();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        let key = TestCipher::open(row.api_key_encrypted.as_deref().unwrap());
        let secret = TestCipher::open(row.api_secret_encrypted.as_deref().unwrap());
        assert_eq!(
            key.strip_prefix("key-"),
            secret.strip_prefix("secret-"),
            "both halves come from the same writer"
        );
        assert_eq!(
            row.version, WRITERS as i64,
            "every acknowledged write counted"
        );
        use user_service_domain::ports::CredentialCipher;
        assert_eq!(
            TestCipher.verify_binding(row),
            user_service_domain::BindingCheck::Bound
        );
        let (events, total) = t.db.audit().list(user, Page::default()).await.unwrap();
        assert_eq!(total, WRITERS as u64);
        assert!(events.iter().all(|e| e.action == AuditAction::Write));
    }
}

/// Instantiates every contract test for one backend.
macro_rules! contract_tests {
    ($open:path) => {
        contract_tests!(@each $open;
            migrations_revert_and_apply_again,
            ping_answers,
            created_user_is_found_by_id_and_email,
            taken_email_is_a_conflict,
            patch_sets_clears_and_keeps_fields,
            soft_deleted_user_is_hidden,
            users_are_listed_by_page_with_total,
            password_hash_is_stored_and_replaced,
            preferences_default_to_an_empty_object_and_round_trip,
            onboarding_progress_round_trips,
            capabilities_are_granted_and_revoked,
            audit_events_are_listed_newest_first_by_page,
            audited_changes_commit_their_events_together,
            new_user_has_no_credentials,
            apply_inserts_and_lists_rows_by_broker,
            write_with_the_current_version_updates_and_resets_the_test,
            stale_or_duplicate_writes_conflict_and_change_nothing,
            delete_with_the_current_version_removes_the_row,
            unconditional_delete_reports_whether_a_row_existed,
            user_and_broker_are_unique,
            hard_deleting_a_user_cascades,
            long_tokens_round_trip,
            batches_rewrites_and_key_counts_serve_rotation,
            a_foreign_update_of_ciphertext_unbinds_the_row,
            a_foreign_writer_that_sets_the_tag_keeps_it,
            consent_is_written_with_the_test_result_it_keeps_and_a_foreign_write_ends_it,
            signing_audit_events_keep_the_service_and_the_request_line,
            a_fresh_database_is_closed_and_every_mode_change_is_audited,
            closing_is_refused_while_a_row_is_unbound,
            a_closed_database_refuses_unbound_and_backward_writes,
            explicit_user_id_is_kept_and_later_ids_do_not_collide,
            concurrent_writers_never_mix_halves_nor_lose_writes,
            sessions_rotate_once_and_revoke_by_family_and_user,
            concurrent_rotations_of_one_session_let_one_win,
            throttle_buckets_admit_a_burst_then_refuse_with_the_wait,
            concurrent_attempts_take_exactly_the_allowed_slots,
        );
    };
    (@each $open:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(test_db) = $open().await else { return };
                crate::contract::$name(&test_db).await;
            }
        )*
    };
}

mod sqlite {
    contract_tests!(crate::support::sqlite);
}

mod postgres {
    contract_tests!(crate::support::postgres);
}

#[tokio::test]
async fn in_memory_sqlite_keeps_its_data_on_its_single_connection() {
    use user_service_domain::ports::UserRepository;
    let db = user_service_persistence::Database::connect(
        "sqlite::memory:",
        &user_service_persistence::PoolSettings::default(),
    )
    .await
    .unwrap();
    db.run_migrations().await.unwrap();
    assert_eq!(db.pool_status().connections, 1);
    let id = support::create_user(&db, "ann").await;
    assert_eq!(
        db.users().get(id).await.unwrap().email.as_str(),
        "ann@example.com"
    );
}
