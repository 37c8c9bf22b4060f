//! The repository contract, run against real SQLite and real PostgreSQL: every test in
//! `contract` runs once per backend (modules `sqlite` and `postgres` at the bottom).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

/// The tests, written once against `TestDb`.
mod contract {
    use std::sync::{Arc, Barrier};

    use diesel::prelude::*;
    use secrecy::{ExposeSecret, SecretString};
    use serde_json::json;
    use user_service_domain::ports::{
        AuditRepository, CapabilityRepository, CredentialMutation, CredentialRepository,
        OnboardingRepository, PreferenceRepository, SystemClock, UserRepository,
    };
    use user_service_domain::{
        AuditAction, AuditEvent, Capability, CredentialService, CredentialUpdate, Email, KeyId,
        NewUser, OnboardingProgress, Page, PlainSecret, RepositoryError, RequestContext,
        SecretInput, UserId, UserPatch,
    };
    use user_service_persistence::schema::{
        onboarding_progress, user_broker_credentials, user_capabilities, user_preferences, users,
    };

    use crate::support::{at, broker, create_user, write, TestCipher, TestDb};

    fn count_rows_of(t: &TestDb, user: UserId) -> [i64; 4] {
        t.db.with_connection(|c| {
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

    pub fn migrations_revert_and_apply_again(t: &TestDb) {
        let user = create_user(&t.db, "ann");
        assert!(t.db.pending_migrations().unwrap().is_empty());
        let reverted = t.db.revert_all_migrations().unwrap();
        assert!(!reverted.is_empty());
        assert!(
            t.db.users().get(user).is_err(),
            "the users table is gone after reverting"
        );
        assert_eq!(t.db.pending_migrations().unwrap().len(), reverted.len());
        assert_eq!(t.db.run_migrations().unwrap().len(), reverted.len());
        assert_eq!(t.db.users().get(user), Err(RepositoryError::NotFound));
        let again = create_user(&t.db, "ann");
        assert_eq!(
            t.db.users().get(again).unwrap().email.as_str(),
            "ann@example.com"
        );
        assert!(t.db.run_migrations().unwrap().is_empty(), "idempotent");
    }

    pub fn ping_answers(t: &TestDb) {
        t.db.ping().unwrap();
        assert!(t.db.pool_status().connections >= 1);
    }

    // --- users ---------------------------------------------------------------------------------

    pub fn created_user_is_found_by_id_and_email(t: &TestDb) {
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
        let created = users.create(&new, None).unwrap();
        assert_eq!(created.email.as_str(), "ann@example.com");
        assert_eq!(created.first_name.as_deref(), Some("Ann"));
        assert!(created.marketing_opt_in && created.is_active && !created.is_superuser);
        assert_eq!(users.get(created.id).unwrap(), created);
        assert_eq!(
            users.find_by_email(&new.email).unwrap(),
            Some(created.clone())
        );
        assert_eq!(
            users
                .find_by_email(&Email::parse("nobody@example.com").unwrap())
                .unwrap(),
            None
        );
        assert_eq!(
            users.get(UserId(created.id.0 + 1000)),
            Err(RepositoryError::NotFound)
        );
    }

    pub fn taken_email_is_a_conflict(t: &TestDb) {
        let users = t.db.users();
        create_user(&t.db, "ann");
        let bob = create_user(&t.db, "bob");
        let again = users.create(
            &NewUser::with_email(Email::parse("ann@example.com").unwrap()),
            None,
        );
        assert!(
            matches!(again, Err(RepositoryError::Conflict(_))),
            "{again:?}"
        );
        let patch = UserPatch {
            email: Some(Email::parse("ann@example.com").unwrap()),
            ..UserPatch::default()
        };
        assert!(matches!(
            users.update(bob, &patch),
            Err(RepositoryError::Conflict(_))
        ));
        assert_eq!(users.get(bob).unwrap().email.as_str(), "bob@example.com");
    }

    pub fn patch_sets_clears_and_keeps_fields(t: &TestDb) {
        let users = t.db.users();
        let id = create_user(&t.db, "ann");
        let before = users.get(id).unwrap();
        let set = UserPatch {
            first_name: Some(Some("Ann".into())),
            phone: Some(Some("123".into())),
            is_active: Some(true),
            ..UserPatch::default()
        };
        let after = users.update(id, &set).unwrap();
        assert_eq!(after.first_name.as_deref(), Some("Ann"));
        assert_eq!(after.phone.as_deref(), Some("123"));
        assert!(after.is_active);
        assert!(after.updated_at >= before.updated_at);
        let clear = UserPatch {
            phone: Some(None),
            email: Some(Email::parse("ann.lee@example.com").unwrap()),
            ..UserPatch::default()
        };
        let after = users.update(id, &clear).unwrap();
        assert_eq!(after.phone, None);
        assert_eq!(
            after.first_name.as_deref(),
            Some("Ann"),
            "absent field kept"
        );
        assert_eq!(after.email.as_str(), "ann.lee@example.com");
        assert_eq!(users.get(id).unwrap(), after);
        assert_eq!(
            users.update(UserId(id.0 + 1000), &UserPatch::default()),
            Err(RepositoryError::NotFound)
        );
    }

    pub fn soft_deleted_user_is_hidden(t: &TestDb) {
        let users = t.db.users();
        let ann = create_user(&t.db, "ann");
        let bob = create_user(&t.db, "bob");
        users.soft_delete(ann).unwrap();
        assert_eq!(users.get(ann), Err(RepositoryError::NotFound));
        assert_eq!(
            users
                .find_by_email(&Email::parse("ann@example.com").unwrap())
                .unwrap(),
            None
        );
        let (items, total) = users.list(Page::default()).unwrap();
        assert_eq!(total, 1);
        assert_eq!(items.iter().map(|u| u.id).collect::<Vec<_>>(), [bob]);
        assert_eq!(users.soft_delete(ann), Err(RepositoryError::NotFound));
        assert_eq!(
            users.update(ann, &UserPatch::default()),
            Err(RepositoryError::NotFound)
        );
        assert_eq!(
            users.password_hash(ann).map(|_| ()),
            Err(RepositoryError::NotFound)
        );
        // The row is still there (soft delete).
        let stored: i64 =
            t.db.with_connection(|c| {
                users::table
                    .filter(users::id.eq(ann.0))
                    .count()
                    .get_result(c)
            })
            .unwrap();
        assert_eq!(stored, 1);
    }

    pub fn users_are_listed_by_page_with_total(t: &TestDb) {
        let users = t.db.users();
        let ids: Vec<UserId> = (0..7)
            .map(|i| create_user(&t.db, &format!("u{i}")))
            .collect();
        let (first, total) = users.list(Page::new(Some(3), Some(0)).unwrap()).unwrap();
        assert_eq!(total, 7);
        assert_eq!(first.iter().map(|u| u.id).collect::<Vec<_>>(), ids[0..3]);
        let (last, total) = users.list(Page::new(Some(3), Some(6)).unwrap()).unwrap();
        assert_eq!(total, 7);
        assert_eq!(last.iter().map(|u| u.id).collect::<Vec<_>>(), ids[6..7]);
        let (none, _) = users
            .list(Page::new(Some(3), Some(u64::MAX)).unwrap())
            .unwrap();
        assert!(none.is_empty());
    }

    pub fn password_hash_is_stored_and_replaced(t: &TestDb) {
        let users = t.db.users();
        let without = create_user(&t.db, "ann");
        assert!(users.password_hash(without).unwrap().is_none());
        let with = users
            .create(
                &NewUser::with_email(Email::parse("bob@example.com").unwrap()),
                Some(SecretString::from("$argon2id$v=19$first")),
            )
            .unwrap()
            .id;
        assert_eq!(
            users.password_hash(with).unwrap().unwrap().expose_secret(),
            "$argon2id$v=19$first"
        );
        users
            .set_password_hash(with, SecretString::from("$argon2id$v=19$second"))
            .unwrap();
        assert_eq!(
            users.password_hash(with).unwrap().unwrap().expose_secret(),
            "$argon2id$v=19$second"
        );
        assert_eq!(
            users.set_password_hash(UserId(with.0 + 1000), SecretString::from("x")),
            Err(RepositoryError::NotFound)
        );
    }

    // --- preferences, onboarding, capabilities ---------------------------------------------------

    pub fn preferences_default_to_an_empty_object_and_round_trip(t: &TestDb) {
        let prefs = t.db.preferences();
        let user = create_user(&t.db, "ann");
        assert_eq!(prefs.get(user).unwrap(), json!({}));
        let value = json!({"theme": "dark", "currency": "EUR", "nested": {"list": [1, 2.5, null, true]}, "é": "日本"});
        assert_eq!(prefs.put(user, &value).unwrap(), value);
        assert_eq!(prefs.get(user).unwrap(), value);
        let replaced = json!({"theme": "light"});
        prefs.put(user, &replaced).unwrap();
        assert_eq!(prefs.get(user).unwrap(), replaced);
        assert!(prefs.put(user, &json!([1, 2])).is_err(), "not an object");
        assert_eq!(
            prefs.put(UserId(user.0 + 1000), &json!({})),
            Err(RepositoryError::NotFound),
            "unknown user"
        );
    }

    pub fn onboarding_progress_round_trips(t: &TestDb) {
        let onboarding = t.db.onboarding();
        let user = create_user(&t.db, "ann");
        assert_eq!(onboarding.get(user).unwrap(), None);
        let mut progress = OnboardingProgress::start();
        progress.complete("api-keys").unwrap();
        progress.updated_at = Some(at(10));
        onboarding.save(user, &progress).unwrap();
        assert_eq!(onboarding.get(user).unwrap(), Some(progress.clone()));
        progress.complete("account-profile").unwrap();
        progress.restarted_at = Some(at(20));
        progress.updated_at = Some(at(30));
        onboarding.save(user, &progress).unwrap();
        let stored = onboarding.get(user).unwrap().unwrap();
        assert_eq!(stored, progress);
        assert_eq!(stored.completed_steps, ["account-profile", "api-keys"]);
        assert_eq!(stored.current_step, "execution-mode");
    }

    pub fn capabilities_are_granted_and_revoked(t: &TestDb) {
        let caps = t.db.capabilities();
        let user = create_user(&t.db, "ann");
        assert!(caps.overrides(user).unwrap().is_empty());
        caps.set(user, &Capability::manage_users(), true).unwrap();
        caps.set(user, &Capability::use_users(), false).unwrap();
        assert_eq!(
            caps.overrides(user).unwrap(),
            [
                (Capability::manage_users(), true),
                (Capability::use_users(), false)
            ]
        );
        caps.set(user, &Capability::manage_users(), false).unwrap();
        assert_eq!(
            caps.overrides(user).unwrap()[0],
            (Capability::manage_users(), false)
        );
        assert_eq!(caps.overrides(user).unwrap().len(), 2);
    }

    // --- audit -------------------------------------------------------------------------------------

    pub fn audited_changes_commit_their_events_together(t: &TestDb) {
        let creds = t.db.credentials();
        let audit = t.db.audit();
        let user = create_user(&t.db, "ann");
        let event = |broker: &str| AuditEvent {
            occurred_at: at(7),
            actor_id: Some(user),
            target_user_id: user,
            action: AuditAction::Write,
            broker: Some(broker.into()),
            outcome: "success".into(),
            key_id: Some(KeyId::new("k1")),
            request_id: Some("req-a".into()),
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
            .unwrap();
        assert_eq!(rows.len(), 2);
        let (events, total) = audit.list(user, Page::default()).unwrap();
        assert_eq!(total, 2);
        assert!(events.contains(&event("binance")) && events.contains(&event("kraken")));

        // A lost compare-and-set changes nothing and records nothing.
        let lost = creds.apply_audited(
            user,
            &[CredentialMutation::Write(write(
                "binance",
                None,
                Some("again"),
                None,
            ))],
            &[event("binance")],
        );
        assert!(
            matches!(lost, Err(RepositoryError::Conflict(_))),
            "{lost:?}"
        );
        assert_eq!(audit.list(user, Page::default()).unwrap().1, 2);
        assert_eq!(
            creds.list(user).unwrap()[0].api_key_encrypted.as_deref(),
            Some("a1")
        );
    }

    pub fn audit_events_are_listed_newest_first_by_page(t: &TestDb) {
        let audit = t.db.audit();
        let user = create_user(&t.db, "ann");
        let other = create_user(&t.db, "bob");
        let event = |seconds: i64, action: AuditAction| AuditEvent {
            occurred_at: at(seconds),
            actor_id: Some(other),
            target_user_id: user,
            action,
            broker: Some("binance".into()),
            outcome: "success".into(),
            key_id: Some(KeyId::new("k1")),
            request_id: Some(format!("req-{seconds}")),
        };
        for (seconds, action) in [
            (1, AuditAction::Write),
            (3, AuditAction::OperatorRead),
            (2, AuditAction::Delete),
            (4, AuditAction::Test),
        ] {
            audit.record(&event(seconds, action)).unwrap();
        }
        audit
            .record(&AuditEvent {
                actor_id: None,
                broker: None,
                key_id: None,
                request_id: Some("r".repeat(1000)),
                target_user_id: other,
                ..event(5, AuditAction::Rotate)
            })
            .unwrap();
        let (page, total) = audit
            .list(user, Page::new(Some(2), Some(0)).unwrap())
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
            .unwrap();
        assert_eq!(
            page,
            [event(2, AuditAction::Delete), event(1, AuditAction::Write)]
        );
        let (others, total) = audit.list(other, Page::default()).unwrap();
        assert_eq!(total, 1);
        assert_eq!(others[0].actor_id, None);
        assert_eq!(
            others[0].request_id.as_ref().unwrap().len(),
            255,
            "long ids are cut"
        );
    }

    // --- credentials -----------------------------------------------------------------------------

    pub fn new_user_has_no_credentials(t: &TestDb) {
        let user = create_user(&t.db, "ann");
        assert!(t.db.credentials().list(user).unwrap().is_empty());
    }

    pub fn apply_inserts_and_lists_rows_by_broker(t: &TestDb) {
        let creds = t.db.credentials();
        let user = create_user(&t.db, "ann");
        let other = create_user(&t.db, "bob");
        let rows = creds
            .apply(
                user,
                &[
                    CredentialMutation::Write(write("kraken", None, Some("tk"), None)),
                    CredentialMutation::Write(write("binance", None, Some("bk"), Some("bs"))),
                    CredentialMutation::Write(write("interactive-brokers", None, None, Some("is"))),
                ],
            )
            .unwrap();
        creds
            .apply(
                other,
                &[CredentialMutation::Write(write(
                    "binance",
                    None,
                    Some("ok"),
                    None,
                ))],
            )
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
        assert_eq!(creds.list(user).unwrap(), rows);
        assert_eq!(creds.list(other).unwrap().len(), 1);
    }

    pub fn write_with_the_current_version_updates_and_resets_the_test(t: &TestDb) {
        let creds = t.db.credentials();
        let user = create_user(&t.db, "ann");
        creds
            .apply(
                user,
                &[CredentialMutation::Write(write(
                    "binance",
                    None,
                    Some("k1"),
                    Some("s1"),
                ))],
            )
            .unwrap();
        assert!(creds
            .record_test(user, &broker("binance"), "ok", at(5))
            .unwrap());
        let tested = &creds.list(user).unwrap()[0];
        assert_eq!(tested.last_test_status.as_deref(), Some("ok"));
        assert_eq!(tested.last_tested_at, Some(at(5)));
        assert_eq!(tested.version, 1, "a test is not a write");

        let rows = creds
            .apply(
                user,
                &[CredentialMutation::Write(write(
                    "binance",
                    Some(1),
                    None,
                    Some("s2"),
                ))],
            )
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

    pub fn stale_or_duplicate_writes_conflict_and_change_nothing(t: &TestDb) {
        let creds = t.db.credentials();
        let user = create_user(&t.db, "ann");
        let before = creds
            .apply(
                user,
                &[
                    CredentialMutation::Write(write("binance", None, Some("k1"), None)),
                    CredentialMutation::Write(write("kraken", None, Some("k2"), None)),
                ],
            )
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
            let outcome = creds.apply(user, mutations);
            assert!(
                matches!(outcome, Err(RepositoryError::Conflict(_))),
                "{outcome:?}"
            );
            assert_eq!(creds.list(user).unwrap(), before, "nothing changed");
        }
    }

    pub fn delete_with_the_current_version_removes_the_row(t: &TestDb) {
        let creds = t.db.credentials();
        let user = create_user(&t.db, "ann");
        creds
            .apply(
                user,
                &[
                    CredentialMutation::Write(write("binance", None, Some("k"), None)),
                    CredentialMutation::Write(write("kraken", None, Some("k"), None)),
                ],
            )
            .unwrap();
        let rows = creds
            .apply(
                user,
                &[CredentialMutation::Delete {
                    broker: broker("binance"),
                    expected_version: 1,
                }],
            )
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].broker.as_str(), "kraken");
    }

    pub fn unconditional_delete_reports_whether_a_row_existed(t: &TestDb) {
        let creds = t.db.credentials();
        let user = create_user(&t.db, "ann");
        creds
            .apply(
                user,
                &[CredentialMutation::Write(write(
                    "binance",
                    None,
                    Some("k"),
                    None,
                ))],
            )
            .unwrap();
        creds
            .apply(
                user,
                &[CredentialMutation::Write(write(
                    "binance",
                    Some(1),
                    Some("k2"),
                    None,
                ))],
            )
            .unwrap();
        assert!(creds.delete(user, &broker("binance")).unwrap());
        assert!(!creds.delete(user, &broker("binance")).unwrap());
        assert!(creds.list(user).unwrap().is_empty());
        assert!(!creds
            .record_test(user, &broker("binance"), "ok", at(1))
            .unwrap());
    }

    pub fn user_and_broker_are_unique(t: &TestDb) {
        let creds = t.db.credentials();
        let user = create_user(&t.db, "ann");
        creds
            .apply(
                user,
                &[CredentialMutation::Write(write(
                    "binance",
                    None,
                    Some("k"),
                    None,
                ))],
            )
            .unwrap();
        // Straight to the table, past the repository's ON CONFLICT clause.
        let duplicate = t.db.with_connection(|c| {
            diesel::insert_into(user_broker_credentials::table)
                .values((
                    user_broker_credentials::user_id.eq(user.0),
                    user_broker_credentials::broker.eq("binance"),
                ))
                .execute(c)
        });
        match duplicate {
            Err(RepositoryError::Conflict(message)) => {
                assert!(!message.contains("binance"), "{message}")
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    pub fn hard_deleting_a_user_cascades(t: &TestDb) {
        let user = create_user(&t.db, "ann");
        let kept = create_user(&t.db, "bob");
        for id in [user, kept] {
            t.db.credentials()
                .apply(
                    id,
                    &[CredentialMutation::Write(write(
                        "binance",
                        None,
                        Some("k"),
                        None,
                    ))],
                )
                .unwrap();
            t.db.preferences().put(id, &json!({"a": 1})).unwrap();
            t.db.onboarding()
                .save(id, &OnboardingProgress::start())
                .unwrap();
            t.db.capabilities()
                .set(id, &Capability::manage_users(), true)
                .unwrap();
        }
        assert_eq!(count_rows_of(t, user), [1, 1, 1, 1]);
        let deleted =
            t.db.with_connection(|c| {
                diesel::delete(users::table.filter(users::id.eq(user.0))).execute(c)
            })
            .unwrap();
        assert_eq!(deleted, 1);
        assert_eq!(count_rows_of(t, user), [0, 0, 0, 0]);
        assert_eq!(count_rows_of(t, kept), [1, 1, 1, 1]);
    }

    pub fn long_tokens_round_trip(t: &TestDb) {
        let creds = t.db.credentials();
        let user = create_user(&t.db, "ann");
        // The Fernet token of a 4096-character secret of 4-byte characters is about 21,900
        // characters; the 5,600-character one of 4096 ASCII characters is the common case.
        let ascii_token = format!("gAAAAA{}", "x".repeat(5_594));
        let wide_token = format!("gAAAAA{}", "y".repeat(21_900));
        let rows = creds
            .apply(
                user,
                &[CredentialMutation::Write(write(
                    "binance",
                    None,
                    Some(&ascii_token),
                    Some(&wide_token),
                ))],
            )
            .unwrap();
        assert_eq!(
            rows[0].api_key_encrypted.as_deref(),
            Some(ascii_token.as_str())
        );
        assert_eq!(
            creds.list(user).unwrap()[0].api_secret_encrypted.as_deref(),
            Some(wide_token.as_str())
        );
    }

    pub fn batches_rewrites_and_key_counts_serve_rotation(t: &TestDb) {
        let creds = t.db.credentials();
        let ann = create_user(&t.db, "ann");
        let bob = create_user(&t.db, "bob");
        creds
            .apply(
                ann,
                &[
                    CredentialMutation::Write(write("binance", None, Some("a1"), None)),
                    CredentialMutation::Write(write("kraken", None, Some("a2"), None)),
                ],
            )
            .unwrap();
        creds
            .apply(
                bob,
                &[CredentialMutation::Write(write(
                    "binance",
                    None,
                    Some("b1"),
                    None,
                ))],
            )
            .unwrap();
        let first = creds.batch_after(0, 2).unwrap();
        assert_eq!(first.len(), 2);
        assert!(first[0].id < first[1].id);
        let rest = creds.batch_after(first[1].id, 2).unwrap();
        assert_eq!(rest.len(), 1);
        assert!(creds.batch_after(rest[0].id, 2).unwrap().is_empty());

        assert!(creds
            .record_test(ann, &broker("binance"), "ok", at(9))
            .unwrap());
        let row = creds.list(ann).unwrap().remove(0);
        let mut rotated = write("binance", Some(row.version), Some("a1-rotated"), None);
        rotated.key_id = KeyId::new("k2");
        rotated.updated_at = at(1000);
        assert_eq!(creds.rewrite(&[(row.id, rotated.clone())]).unwrap(), [true]);
        assert_eq!(
            creds.rewrite(&[(row.id, rotated.clone())]).unwrap(),
            [false],
            "version moved on"
        );
        let after = creds.list(ann).unwrap().remove(0);
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
        assert_eq!(creds.rewrite(&[(after.id, wrong_broker)]).unwrap(), [false]);
        assert!(creds
            .rewrite(&[(after.id, write("binance", None, None, None))])
            .is_err());
        assert_eq!(creds.rewrite(&[]).unwrap(), Vec::<bool>::new());

        // A row without a key id, as the Python service writes them.
        t.db.with_connection(|c| {
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
            creds.count_by_key_id().unwrap(),
            [
                (None, 1),
                (Some(KeyId::new("k1")), 2),
                (Some(KeyId::new("k2")), 1)
            ]
        );
        let legacy = creds
            .list(bob)
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
                .unwrap(),
            [true, false]
        );
        assert_eq!(
            creds.count_by_key_id().unwrap(),
            [(Some(KeyId::new("k1")), 2), (Some(KeyId::new("k2")), 2)]
        );
    }

    pub fn a_foreign_writer_that_sets_the_tag_keeps_it(t: &TestDb) {
        let creds = t.db.credentials();
        let user = create_user(&t.db, "ann");
        let row = creds
            .apply(
                user,
                &[CredentialMutation::Write(write(
                    "binance",
                    None,
                    Some("k"),
                    Some("s"),
                ))],
            )
            .unwrap()
            .remove(0);
        // Someone copying another row's ciphertext and tag: the tag stays, to be checked.
        t.db.with_connection(|c| {
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
        let after = creds.list(user).unwrap().remove(0);
        assert_eq!(after.version, 2);
        assert_eq!(after.binding.as_deref(), Some("v1.copied-tag"));
        assert_eq!(after.key_id, row.key_id);
    }

    pub fn explicit_user_id_is_kept_and_later_ids_do_not_collide(t: &TestDb) {
        let users = t.db.users();
        let mut platform = NewUser::with_email(Email::parse("platform@example.com").unwrap());
        platform.id = Some(UserId(4242));
        assert_eq!(users.create(&platform, None).unwrap().id, UserId(4242));
        let next = users
            .create(
                &NewUser::with_email(Email::parse("next@example.com").unwrap()),
                None,
            )
            .unwrap();
        assert!(next.id.0 > 4242, "{:?}", next.id);
    }

    pub fn a_foreign_update_of_ciphertext_unbinds_the_row(t: &TestDb) {
        let creds = t.db.credentials();
        let user = create_user(&t.db, "ann");
        let row = creds
            .apply(
                user,
                &[CredentialMutation::Write(write(
                    "binance",
                    None,
                    Some("k"),
                    Some("s"),
                ))],
            )
            .unwrap()
            .remove(0);
        assert!(creds
            .record_test(user, &broker("binance"), "ok", at(3))
            .unwrap());
        // What the Python service does: change a ciphertext, knowing nothing of version/binding.
        t.db.with_connection(|c| {
            diesel::update(
                user_broker_credentials::table.filter(user_broker_credentials::id.eq(row.id)),
            )
            .set(user_broker_credentials::api_key_encrypted.eq("gAAAAApython"))
            .execute(c)
        })
        .unwrap();
        let after = creds.list(user).unwrap().remove(0);
        assert_eq!(after.api_key_encrypted.as_deref(), Some("gAAAAApython"));
        assert_eq!(after.api_secret_encrypted.as_deref(), Some("s"));
        assert_eq!(after.version, 2, "the change is visible to compare-and-set");
        assert_eq!((after.key_id, after.binding), (None, None));
        assert_eq!((after.last_test_status, after.last_tested_at), (None, None));
        // A stale writer loses; a fresh one binds the row again.
        assert!(matches!(
            creds.apply(
                user,
                &[CredentialMutation::Write(write(
                    "binance",
                    Some(1),
                    Some("k2"),
                    None
                ))]
            ),
            Err(RepositoryError::Conflict(_))
        ));
        let rebound = creds
            .apply(
                user,
                &[CredentialMutation::Write(write(
                    "binance",
                    Some(2),
                    Some("k2"),
                    None,
                ))],
            )
            .unwrap()
            .remove(0);
        assert_eq!(rebound.version, 3);
        assert_eq!(rebound.binding.as_deref(), Some("bind-binance-3"));
        assert_eq!(rebound.key_id, Some(KeyId::new("k1")));
    }

    pub fn concurrent_writers_never_mix_halves_nor_lose_writes(t: &TestDb) {
        const WRITERS: usize = 50;
        let user = create_user(&t.db, "ann");
        let service = CredentialService::new(
            Arc::new(t.db.credentials()),
            Arc::new(t.db.audit()),
            Arc::new(SystemClock),
        );
        let barrier = Barrier::new(WRITERS);
        let outcomes: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..WRITERS)
                .map(|i| {
                    let (service, barrier) = (&service, &barrier);
                    scope.spawn(move || {
                        let update = CredentialUpdate {
                            broker: broker("binance"),
                            api_key: SecretInput::Set(PlainSecret::new(format!("key-{i}"))),
                            api_secret: SecretInput::Set(PlainSecret::new(format!("secret-{i}"))),
                        };
                        let ctx = RequestContext::new(user, format!("req-{i}"));
                        barrier.wait();
                        service.update(&TestCipher, &ctx, user, vec![update])
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let failures: Vec<_> = outcomes.iter().filter(|o| o.is_err()).collect();
        assert!(failures.is_empty(), "{failures:?}");

        let rows = t.db.credentials().list(user).unwrap();
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
        assert!(TestCipher.verify_binding(row));
        let (events, total) = t.db.audit().list(user, Page::default()).unwrap();
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
            explicit_user_id_is_kept_and_later_ids_do_not_collide,
            concurrent_writers_never_mix_halves_nor_lose_writes,
        );
    };
    (@each $open:path; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let Some(test_db) = $open() else { return };
                crate::contract::$name(&test_db);
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

#[test]
fn in_memory_sqlite_keeps_its_data_on_its_single_connection() {
    use user_service_domain::ports::UserRepository;
    let db = user_service_persistence::Database::connect(
        "sqlite::memory:",
        &user_service_persistence::PoolSettings::default(),
    )
    .unwrap();
    db.run_migrations().unwrap();
    assert_eq!(db.pool_status().connections, 1);
    let id = support::create_user(&db, "ann");
    assert_eq!(
        db.users().get(id).unwrap().email.as_str(),
        "ann@example.com"
    );
}
