//! Domain services: the credential use cases, written against ports only.

use std::sync::Arc;

use log::warn;
use secrecy::ExposeSecret;

use crate::audit::{AuditAction, AuditEvent};
use crate::broker::BrokerId;
use crate::credential::{mask, CredentialHealth, CredentialStatus, KeyId, StoredCredential};
use crate::error::{CipherError, DomainError, RepositoryError};
use crate::limits::MAX_WRITE_ATTEMPTS;
use crate::ports::{
    AuditRepository, BrokerProbe, Clock, CredentialCipher, CredentialMutation,
    CredentialRepository, CredentialWrite, ProbeStatus,
};
use crate::secret::PlainSecret;
use crate::update::{plan_update, CredentialUpdate, HalfChange, PlannedChange};
use crate::user::UserId;

/// Who is acting, for audit records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The verified identity (`None` for the command line).
    pub actor: Option<UserId>,
    /// Request id, echoed in audit records.
    pub request_id: Option<String>,
}

impl RequestContext {
    /// A context for `actor` within request `request_id`.
    pub fn new(actor: UserId, request_id: impl Into<String>) -> Self {
        Self {
            actor: Some(actor),
            request_id: Some(request_id.into()),
        }
    }

    fn is_operator_access(&self, target: UserId) -> bool {
        self.actor.is_some_and(|actor| actor != target)
    }
}

/// A connection test request: values given override the stored ones.
#[derive(Debug, Clone)]
pub struct CredentialTest {
    /// Broker to test.
    pub broker: BrokerId,
    /// API key to use instead of the stored one.
    pub api_key: Option<PlainSecret>,
    /// API secret to use instead of the stored one.
    pub api_secret: Option<PlainSecret>,
}

/// What a connection test found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestOutcome {
    /// The broker was called.
    Probed(ProbeStatus),
    /// A key or secret is missing (neither sent nor stored and readable).
    MissingKeys,
}

impl TestOutcome {
    /// The status stored and answered (`ok`, `unauthorized`, `network_error`).
    pub fn status(self) -> ProbeStatus {
        match self {
            Self::Probed(status) => status,
            Self::MissingKeys => ProbeStatus::Unauthorized,
        }
    }
}

/// The answer of a connection test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// Broker tested.
    pub broker: BrokerId,
    /// What happened.
    pub outcome: TestOutcome,
    /// When.
    pub tested_at: chrono::DateTime<chrono::Utc>,
}

/// The broker credential use cases: list (masked), update (§4.2), delete.
///
/// Authorization is decided before a call reaches this service (see [`crate::authorize`]); the
/// cipher is passed per call because the key ring can be reloaded while the service runs.
#[derive(Clone)]
pub struct CredentialService {
    credentials: Arc<dyn CredentialRepository>,
    audit: Arc<dyn AuditRepository>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for CredentialService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialService").finish_non_exhaustive()
    }
}

impl CredentialService {
    /// A service over the given ports.
    pub fn new(
        credentials: Arc<dyn CredentialRepository>,
        audit: Arc<dyn AuditRepository>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            credentials,
            audit,
            clock,
        }
    }

    /// The masked credentials of `target`, ordered by broker. A row that cannot be read is
    /// reported as undecryptable, never as an error of the whole list.
    pub fn list(
        &self,
        cipher: &dyn CredentialCipher,
        ctx: &RequestContext,
        target: UserId,
    ) -> Result<Vec<CredentialStatus>, DomainError> {
        let rows = self.credentials.list(target)?;
        if ctx.is_operator_access(target) {
            self.record(
                ctx,
                target,
                AuditAction::OperatorRead,
                None,
                "success",
                None,
            );
        }
        Ok(self.statuses(cipher, ctx, &rows))
    }

    /// Applies an update request (SPEC §4.2) in one transaction and returns the new list.
    ///
    /// When a concurrent writer changes the same rows between planning and writing, the request
    /// is planned again on fresh rows, so no acknowledged write is lost and no row mixes halves
    /// of two requests.
    pub fn update(
        &self,
        cipher: &dyn CredentialCipher,
        ctx: &RequestContext,
        target: UserId,
        request: Vec<CredentialUpdate>,
    ) -> Result<Vec<CredentialStatus>, DomainError> {
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let stored = self.credentials.list(target)?;
            let plan = plan_update(&stored, request.clone())?;
            if plan.is_empty() {
                return Ok(self.statuses(cipher, ctx, &stored));
            }
            let mutations = self.seal(cipher, target, &stored, plan)?;
            let events: Vec<AuditEvent> = mutations
                .iter()
                .map(|mutation| self.mutation_event(ctx, target, mutation))
                .collect();
            match self.credentials.apply_audited(target, &mutations, &events) {
                Ok(rows) => return Ok(self.statuses(cipher, ctx, &rows)),
                Err(RepositoryError::Conflict(_)) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(DomainError::Conflict(
            "Broker credentials are being changed concurrently; retry".into(),
        ))
    }

    /// Deletes the credential of `target` for `broker`.
    pub fn delete(
        &self,
        ctx: &RequestContext,
        target: UserId,
        broker: &BrokerId,
    ) -> Result<(), DomainError> {
        if !self.credentials.delete(target, broker)? {
            return Err(DomainError::NotFound("Broker credential"));
        }
        self.record(
            ctx,
            target,
            AuditAction::Delete,
            Some(broker),
            "success",
            None,
        );
        Ok(())
    }

    /// Runs a connection test (SPEC §4.4): values in the request override stored ones; the
    /// outcome is stored on the existing row and audited. Missing halves answer
    /// [`TestOutcome::MissingKeys`] without calling the broker.
    pub fn test(
        &self,
        cipher: &dyn CredentialCipher,
        probe: &dyn BrokerProbe,
        ctx: &RequestContext,
        target: UserId,
        request: CredentialTest,
    ) -> Result<TestResult, DomainError> {
        let rows = self.credentials.list(target)?;
        let stored = rows.iter().find(|row| row.broker == request.broker);
        let readable = stored.is_some_and(|row| cipher.verify_binding(row));
        let open = |token: Option<&String>| -> Option<PlainSecret> {
            let token = token?;
            readable
                .then(|| cipher.decrypt(token).ok())
                .flatten()
                .map(|o| o.value)
        };
        let api_key = request
            .api_key
            .or_else(|| open(stored.and_then(|r| r.api_key_encrypted.as_ref())));
        let api_secret = request
            .api_secret
            .or_else(|| open(stored.and_then(|r| r.api_secret_encrypted.as_ref())));
        let outcome = match (&api_key, &api_secret) {
            (Some(key), Some(secret)) => {
                TestOutcome::Probed(probe.probe(&request.broker, key, secret))
            }
            _ => TestOutcome::MissingKeys,
        };
        let tested_at = self.clock.now();
        let status = outcome.status();
        if stored.is_some() {
            self.credentials
                .record_test(target, &request.broker, status.as_str(), tested_at)?;
        }
        self.record(
            ctx,
            target,
            AuditAction::Test,
            Some(&request.broker),
            status.as_str(),
            stored.and_then(|r| r.key_id.clone()),
        );
        Ok(TestResult {
            broker: request.broker,
            outcome,
            tested_at,
        })
    }

    /// Turns a plan into row writes: encrypts new values under the primary key, re-encrypts kept
    /// halves that are under another key, and binds every written row.
    fn seal(
        &self,
        cipher: &dyn CredentialCipher,
        target: UserId,
        stored: &[StoredCredential],
        plan: Vec<PlannedChange>,
    ) -> Result<Vec<CredentialMutation>, DomainError> {
        let primary = cipher.primary_key_id();
        let now = self.clock.now();
        plan.into_iter()
            .map(|change| match change {
                PlannedChange::Delete {
                    broker,
                    expected_version,
                } => Ok(CredentialMutation::Delete {
                    broker,
                    expected_version,
                }),
                PlannedChange::Upsert {
                    broker,
                    expected_version,
                    api_key,
                    api_secret,
                } => {
                    let current = stored.iter().find(|row| row.broker == broker);
                    let on_primary = current.and_then(|row| row.key_id.as_ref()) == Some(&primary);
                    let kept = |token: Option<&String>| -> Result<Option<String>, CipherError> {
                        match token {
                            Some(token) if !on_primary => reencrypt(cipher, token).map(Some),
                            other => Ok(other.cloned()),
                        }
                    };
                    let api_key_encrypted = match api_key {
                        HalfChange::Keep => {
                            kept(current.and_then(|r| r.api_key_encrypted.as_ref()))?
                        }
                        HalfChange::Clear => None,
                        HalfChange::Set(value) => Some(cipher.encrypt(&value)?.token),
                    };
                    let api_secret_encrypted = match api_secret {
                        HalfChange::Keep => {
                            kept(current.and_then(|r| r.api_secret_encrypted.as_ref()))?
                        }
                        HalfChange::Clear => None,
                        HalfChange::Set(value) => Some(cipher.encrypt(&value)?.token),
                    };
                    let version = expected_version.map_or(1, |v| v + 1);
                    let binding = cipher.bind(&crate::BindingInput {
                        user_id: target,
                        broker: &broker,
                        version,
                        api_key_encrypted: api_key_encrypted.as_deref(),
                        api_secret_encrypted: api_secret_encrypted.as_deref(),
                    });
                    Ok(CredentialMutation::Write(CredentialWrite {
                        broker,
                        expected_version,
                        version,
                        api_key_encrypted,
                        api_secret_encrypted,
                        key_id: primary.clone(),
                        binding,
                        updated_at: now,
                    }))
                }
            })
            .collect()
    }

    fn statuses(
        &self,
        cipher: &dyn CredentialCipher,
        ctx: &RequestContext,
        rows: &[StoredCredential],
    ) -> Vec<CredentialStatus> {
        rows.iter()
            .map(|row| {
                let status = status_of(cipher, row);
                if status.status == CredentialHealth::Undecryptable {
                    warn!(
                        "broker credential row {} (key id {}) cannot be decrypted or failed its binding check",
                        row.id,
                        row.key_id.as_ref().map_or("none", KeyId::as_str)
                    );
                    self.record(
                        ctx,
                        row.user_id,
                        AuditAction::BindingFailure,
                        Some(&row.broker),
                        "failure",
                        row.key_id.clone(),
                    );
                }
                status
            })
            .collect()
    }

    /// The audit event of one mutation, written in the same transaction as the mutation.
    fn mutation_event(
        &self,
        ctx: &RequestContext,
        target: UserId,
        mutation: &CredentialMutation,
    ) -> AuditEvent {
        let (action, broker, key_id) = match mutation {
            CredentialMutation::Write(write) => (
                AuditAction::Write,
                &write.broker,
                Some(write.key_id.clone()),
            ),
            CredentialMutation::Delete { broker, .. } => (AuditAction::Delete, broker, None),
        };
        self.event(ctx, target, action, Some(broker), "success", key_id)
    }

    fn event(
        &self,
        ctx: &RequestContext,
        target: UserId,
        action: AuditAction,
        broker: Option<&BrokerId>,
        outcome: &str,
        key_id: Option<KeyId>,
    ) -> AuditEvent {
        AuditEvent {
            occurred_at: self.clock.now(),
            actor_id: ctx.actor,
            target_user_id: target,
            action,
            broker: broker.map(ToString::to_string),
            outcome: outcome.to_owned(),
            key_id,
            request_id: ctx.request_id.clone(),
        }
    }

    /// Records an audit event on its own (deletes, tests, reads, binding failures); a failure
    /// to record is logged, not returned, because the change it describes has already been
    /// committed. Writes are audited inside their transaction instead ([`Self::update`]).
    fn record(
        &self,
        ctx: &RequestContext,
        target: UserId,
        action: AuditAction,
        broker: Option<&BrokerId>,
        outcome: &str,
        key_id: Option<KeyId>,
    ) {
        let event = self.event(ctx, target, action, broker, outcome, key_id);
        if let Err(error) = self.audit.record(&event) {
            warn!(
                "audit event {} for user {target} not recorded: {error}",
                action.as_str()
            );
        }
    }
}

fn reencrypt(cipher: &dyn CredentialCipher, token: &str) -> Result<String, CipherError> {
    match cipher.decrypt(token) {
        Ok(opened) => Ok(cipher.encrypt(&opened.value)?.token),
        // A kept half that no configured key opens stays as it is: it is reported undecryptable
        // on read, and the user can replace or clear it.
        Err(CipherError::Undecryptable | CipherError::NotUtf8) => Ok(token.to_owned()),
        Err(other) => Err(other),
    }
}

/// The public status of one row: decrypts each half, checks the binding, masks.
pub fn status_of(cipher: &dyn CredentialCipher, row: &StoredCredential) -> CredentialStatus {
    let bound = cipher.verify_binding(row);
    let open = |token: Option<&String>| {
        token.map(|t| cipher.decrypt(t).map(|o| mask(o.value.expose_secret())))
    };
    let key = open(row.api_key_encrypted.as_ref());
    let secret = open(row.api_secret_encrypted.as_ref());
    let readable = bound && !matches!(key, Some(Err(_))) && !matches!(secret, Some(Err(_)));
    let masked = |half: Option<Result<String, CipherError>>| match half {
        Some(Ok(mask)) if readable => Some(mask),
        _ => None,
    };
    CredentialStatus {
        broker: row.broker.to_string(),
        label: row.label.clone(),
        has_api_key: row.api_key_encrypted.is_some(),
        has_api_secret: row.api_secret_encrypted.is_some(),
        api_key_masked: masked(key),
        api_secret_masked: masked(secret),
        updated_at: row.updated_at,
        last_test_status: row.last_test_status.clone(),
        last_tested_at: row.last_tested_at,
        status: if readable {
            CredentialHealth::Ok
        } else {
            CredentialHealth::Undecryptable
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::ProbeStatus;
    use crate::ports::{
        MockAuditRepository, MockClock, MockCredentialCipher, MockCredentialRepository, Opened,
        Sealed,
    };
    use crate::test_support::{entry, stored_row};
    use crate::{CipherError, PlainSecret, ValidationError};
    use chrono::{TimeZone, Utc};
    use mockall::predicate::eq;

    /// A cipher whose tokens are `enc:<plaintext>` under key `primary`; `bad:` tokens fail.
    fn fake_cipher() -> MockCredentialCipher {
        let mut cipher = MockCredentialCipher::new();
        cipher
            .expect_primary_key_id()
            .returning(|| KeyId::new("primary"));
        cipher.expect_encrypt().returning(|value| {
            Ok(Sealed {
                token: format!("enc:{}", value.expose_secret()),
                key_id: KeyId::new("primary"),
            })
        });
        cipher
            .expect_decrypt()
            .returning(|token| match token.strip_prefix("enc:") {
                Some(plain) => Ok(Opened {
                    value: PlainSecret::new(plain),
                    key_id: KeyId::new("primary"),
                }),
                None => Err(CipherError::Undecryptable),
            });
        cipher
            .expect_bind()
            .returning(|input| format!("bound:{}:{}", input.user_id, input.version));
        cipher
            .expect_verify_binding()
            .returning(|row| row.binding.as_deref() != Some("forged"));
        cipher
    }

    fn clock() -> Arc<MockClock> {
        let mut clock = MockClock::new();
        clock
            .expect_now()
            .returning(|| Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap());
        Arc::new(clock)
    }

    fn quiet_audit() -> Arc<MockAuditRepository> {
        let mut audit = MockAuditRepository::new();
        audit.expect_record().returning(|_| Ok(()));
        Arc::new(audit)
    }

    fn readable_row(broker: &str, key: &str, secret: &str, version: i64) -> StoredCredential {
        let mut row = stored_row(broker, true, true, version);
        row.api_key_encrypted = Some(format!("enc:{key}"));
        row.api_secret_encrypted = Some(format!("enc:{secret}"));
        row
    }

    fn ctx() -> RequestContext {
        RequestContext::new(UserId(1), "req-1")
    }

    #[test]
    fn writes_are_audited_inside_their_transaction() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list()
            .returning(|_| Ok(vec![readable_row("kraken", "k", "s", 3)]));
        repo.expect_apply_audited()
            .withf(|_, mutations, events| {
                mutations.len() == 2
                    && events.len() == 2
                    && events.iter().all(|e| {
                        e.target_user_id == UserId(1)
                            && e.actor_id == Some(UserId(1))
                            && e.request_id.as_deref() == Some("req-1")
                            && e.outcome == "success"
                    })
                    && events.iter().any(|e| {
                        e.action == AuditAction::Write
                            && e.broker.as_deref() == Some("binance")
                            && e.key_id.as_ref().map(KeyId::as_str) == Some("primary")
                    })
                    && events.iter().any(|e| {
                        e.action == AuditAction::Delete
                            && e.broker.as_deref() == Some("kraken")
                            && e.key_id.is_none()
                    })
            })
            .times(1)
            .returning(|_, _, _| Ok(vec![]));
        // Nothing is recorded apart from the transaction.
        let mut audit = MockAuditRepository::new();
        audit.expect_record().never();
        let service = CredentialService::new(Arc::new(repo), Arc::new(audit), clock());
        service
            .update(
                &fake_cipher(),
                &ctx(),
                UserId(1),
                vec![
                    entry("binance", Some("new-key-1"), None),
                    entry("kraken", Some(""), Some("")),
                ],
            )
            .unwrap();
    }

    #[test]
    fn list_masks_every_stored_half() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list()
            .with(eq(UserId(1)))
            .returning(|_| Ok(vec![readable_row("binance", "abcd1234efgh", "xyz", 2)]));
        let service = CredentialService::new(Arc::new(repo), quiet_audit(), clock());

        let list = service.list(&fake_cipher(), &ctx(), UserId(1)).unwrap();

        assert_eq!(list[0].api_key_masked.as_deref(), Some("••••••••efgh"));
        assert_eq!(list[0].api_secret_masked.as_deref(), Some("•••"));
        assert_eq!(list[0].status, CredentialHealth::Ok);
    }

    #[test]
    fn undecryptable_row_is_marked_and_audited_without_failing_the_list() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list().returning(|_| {
            let mut broken = readable_row("kraken", "k", "s", 1);
            broken.api_key_encrypted = Some("bad:token".into());
            Ok(vec![
                readable_row("binance", "abcd1234", "secret99", 1),
                broken,
            ])
        });
        let mut audit = MockAuditRepository::new();
        audit
            .expect_record()
            .withf(|e| {
                e.action == AuditAction::BindingFailure && e.broker.as_deref() == Some("kraken")
            })
            .times(1)
            .returning(|_| Ok(()));
        let service = CredentialService::new(Arc::new(repo), Arc::new(audit), clock());

        let list = service.list(&fake_cipher(), &ctx(), UserId(1)).unwrap();

        assert_eq!(list[0].status, CredentialHealth::Ok);
        assert_eq!(list[1].status, CredentialHealth::Undecryptable);
        assert!(list[1].has_api_key);
        assert_eq!(list[1].api_key_masked, None);
        assert_eq!(
            list[1].api_secret_masked, None,
            "no half of a suspect row is shown"
        );
    }

    #[test]
    fn swapped_ciphertext_is_rejected() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list().returning(|_| {
            let mut row = readable_row("binance", "other-users-key", "s", 1);
            row.binding = Some("forged".into());
            Ok(vec![row])
        });
        let service = CredentialService::new(Arc::new(repo), quiet_audit(), clock());

        let list = service.list(&fake_cipher(), &ctx(), UserId(1)).unwrap();

        assert_eq!(list[0].status, CredentialHealth::Undecryptable);
        assert_eq!(list[0].api_key_masked, None);
    }

    #[test]
    fn operator_read_is_audited() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list().returning(|_| Ok(vec![]));
        let mut audit = MockAuditRepository::new();
        audit
            .expect_record()
            .withf(|e| {
                e.action == AuditAction::OperatorRead
                    && e.actor_id == Some(UserId(9))
                    && e.target_user_id == UserId(1)
            })
            .times(1)
            .returning(|_| Ok(()));
        let service = CredentialService::new(Arc::new(repo), Arc::new(audit), clock());

        service
            .list(
                &fake_cipher(),
                &RequestContext::new(UserId(9), "r"),
                UserId(1),
            )
            .unwrap();
    }

    #[test]
    fn update_encrypts_binds_and_writes_one_batch() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list().times(1).returning(|_| Ok(vec![]));
        repo.expect_apply_audited()
            .withf(|user, mutations, _| {
                *user == UserId(1)
                    && matches!(mutations, [CredentialMutation::Write(w)]
                        if w.expected_version.is_none()
                        && w.version == 1
                        && w.api_key_encrypted.as_deref() == Some("enc:abcd1234efgh")
                        && w.api_secret_encrypted.is_none()
                        && w.binding == "bound:1:1"
                        && w.key_id.as_str() == "primary")
            })
            .times(1)
            .returning(|_, _, _| Ok(vec![readable_row("binance", "abcd1234efgh", "x", 1)]));
        let service = CredentialService::new(Arc::new(repo), quiet_audit(), clock());

        let list = service
            .update(
                &fake_cipher(),
                &ctx(),
                UserId(1),
                vec![entry("Binance", Some("abcd1234efgh"), None)],
            )
            .unwrap();

        assert_eq!(list[0].api_key_masked.as_deref(), Some("••••••••efgh"));
    }

    #[test]
    fn kept_half_under_an_old_key_is_reencrypted_under_the_primary() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list().returning(|_| {
            let mut row = readable_row("binance", "old-key-value", "old-secret", 4);
            row.key_id = Some(KeyId::new("retired"));
            Ok(vec![row])
        });
        repo.expect_apply_audited()
            .withf(|_, mutations, _| {
                matches!(mutations, [CredentialMutation::Write(w)]
                    if w.expected_version == Some(4)
                    && w.version == 5
                    && w.api_key_encrypted.as_deref() == Some("enc:old-key-value")
                    && w.api_secret_encrypted.as_deref() == Some("enc:new-secret"))
            })
            .times(1)
            .returning(|_, _, _| Ok(vec![]));
        let service = CredentialService::new(Arc::new(repo), quiet_audit(), clock());

        service
            .update(
                &fake_cipher(),
                &ctx(),
                UserId(1),
                vec![entry("binance", None, Some("new-secret"))],
            )
            .unwrap();
    }

    #[test]
    fn conflict_replans_on_fresh_rows() {
        let mut repo = MockCredentialRepository::new();
        let mut seq = mockall::Sequence::new();
        repo.expect_list()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(vec![]));
        repo.expect_apply_audited()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _| Err(RepositoryError::Conflict("lost".into())));
        repo.expect_list()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(vec![readable_row("binance", "theirs", "theirs", 1)]));
        repo.expect_apply_audited()
            .withf(
                |_, m, _| matches!(m, [CredentialMutation::Write(w)] if w.expected_version == Some(1)),
            )
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _| Ok(vec![]));
        let service = CredentialService::new(Arc::new(repo), quiet_audit(), clock());

        service
            .update(
                &fake_cipher(),
                &ctx(),
                UserId(1),
                vec![entry("binance", Some("mine"), Some("mine"))],
            )
            .unwrap();
    }

    #[test]
    fn endless_conflicts_end_in_a_conflict_error() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list().returning(|_| Ok(vec![]));
        repo.expect_apply_audited()
            .times(crate::limits::MAX_WRITE_ATTEMPTS)
            .returning(|_, _, _| Err(RepositoryError::Conflict("lost".into())));
        let service = CredentialService::new(Arc::new(repo), quiet_audit(), clock());

        let error = service
            .update(
                &fake_cipher(),
                &ctx(),
                UserId(1),
                vec![entry("binance", Some("k"), None)],
            )
            .unwrap_err();
        assert!(matches!(error, DomainError::Conflict(_)));
    }

    #[test]
    fn failed_encryption_writes_nothing() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list().returning(|_| Ok(vec![]));
        repo.expect_apply_audited().never();
        let mut cipher = MockCredentialCipher::new();
        cipher
            .expect_primary_key_id()
            .returning(|| KeyId::new("primary"));
        cipher
            .expect_encrypt()
            .returning(|_| Err(CipherError::NotConfigured));
        let service = CredentialService::new(Arc::new(repo), quiet_audit(), clock());

        let error = service
            .update(
                &cipher,
                &ctx(),
                UserId(1),
                vec![entry("binance", Some("k"), None)],
            )
            .unwrap_err();
        assert_eq!(error, DomainError::KeyNotConfigured);
    }

    #[test]
    fn duplicate_brokers_write_nothing() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list().returning(|_| Ok(vec![]));
        repo.expect_apply_audited().never();
        let service = CredentialService::new(Arc::new(repo), quiet_audit(), clock());

        let error = service
            .update(
                &fake_cipher(),
                &ctx(),
                UserId(1),
                vec![entry("a", Some("1"), None), entry("A", Some("2"), None)],
            )
            .unwrap_err();
        assert_eq!(
            error,
            DomainError::Validation(ValidationError::DuplicateBroker("a".into()))
        );
    }

    #[test]
    fn deleting_a_missing_broker_is_not_found() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_delete().returning(|_, _| Ok(false));
        let service = CredentialService::new(Arc::new(repo), quiet_audit(), clock());

        let error = service
            .delete(&ctx(), UserId(1), &BrokerId::parse("binance").unwrap())
            .unwrap_err();
        assert_eq!(error, DomainError::NotFound("Broker credential"));
    }

    #[test]
    fn test_uses_stored_values_unless_overridden_and_records_the_outcome() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list().returning(|_| {
            Ok(vec![readable_row(
                "binance",
                "stored-key",
                "stored-secret",
                1,
            )])
        });
        repo.expect_record_test()
            .withf(|_, broker, status, _| broker.as_str() == "binance" && status == "ok")
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let mut probe = crate::ports::MockBrokerProbe::new();
        probe
            .expect_probe()
            .withf(|_, key, secret| {
                key.expose_secret() == "stored-key" && secret.expose_secret() == "sent-secret"
            })
            .times(1)
            .returning(|_, _, _| ProbeStatus::Ok);
        let service = CredentialService::new(Arc::new(repo), quiet_audit(), clock());

        let result = service
            .test(
                &fake_cipher(),
                &probe,
                &ctx(),
                UserId(1),
                CredentialTest {
                    broker: BrokerId::parse("binance").unwrap(),
                    api_key: None,
                    api_secret: Some(PlainSecret::new("sent-secret")),
                },
            )
            .unwrap();
        assert_eq!(result.outcome, TestOutcome::Probed(ProbeStatus::Ok));
    }

    #[test]
    fn test_without_keys_does_not_call_the_broker() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list().returning(|_| Ok(vec![]));
        repo.expect_record_test().never();
        let mut probe = crate::ports::MockBrokerProbe::new();
        probe.expect_probe().never();
        let service = CredentialService::new(Arc::new(repo), quiet_audit(), clock());

        let result = service
            .test(
                &fake_cipher(),
                &probe,
                &ctx(),
                UserId(1),
                CredentialTest {
                    broker: BrokerId::parse("kraken").unwrap(),
                    api_key: Some(PlainSecret::new("k")),
                    api_secret: None,
                },
            )
            .unwrap();
        assert_eq!(result.outcome, TestOutcome::MissingKeys);
        assert_eq!(result.outcome.status(), ProbeStatus::Unauthorized);
    }

    #[test]
    fn delete_is_audited_with_the_actor_and_request() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_delete().returning(|_, _| Ok(true));
        let mut audit = MockAuditRepository::new();
        audit
            .expect_record()
            .withf(|e| {
                e.action == AuditAction::Delete
                    && e.request_id.as_deref() == Some("req-1")
                    && e.broker.as_deref() == Some("binance")
            })
            .times(1)
            .returning(|_| Ok(()));
        let service = CredentialService::new(Arc::new(repo), Arc::new(audit), clock());

        service
            .delete(&ctx(), UserId(1), &BrokerId::parse("binance").unwrap())
            .unwrap();
    }
}
