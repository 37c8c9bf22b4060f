//! The broker credential use cases: list (masked), update, delete, connection test.

use std::sync::Arc;

use log::warn;
use secrecy::ExposeSecret;

use crate::audit::{AuditAction, AuditEvent};
use crate::broker::BrokerId;
use crate::credential::{
    mask, BindingInput, CredentialHealth, CredentialStatus, KeyId, StoredCredential,
};
use crate::cutover::{BindingCheck, CutoverMode};
use crate::error::{AccessDenied, CipherError, DomainError, RepositoryError, ValidationError};
use crate::limits::MAX_WRITE_ATTEMPTS;
use crate::ports::{
    AuditRepository, BrokerProbe, Clock, CredentialCipher, CredentialMutation,
    CredentialRepository, CredentialWrite, ProbeStatus, WritePlan,
};
use crate::secret::PlainSecret;
use crate::service::context::RequestContext;
use crate::service::cutover::{CutoverGate, LazyMode};
use crate::service::shown::{Masks, ShownRows};
use crate::update::{plan_update, CredentialUpdate, HalfChange, PlannedChange};
use crate::user::UserId;

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
    /// A key or secret is missing (neither sent nor stored and readable): no call was made.
    MissingKeys,
}

impl TestOutcome {
    /// The status stored and answered.
    pub fn status(self) -> ProbeStatus {
        match self {
            Self::Probed(status) => status,
            Self::MissingKeys => ProbeStatus::MissingCredentials,
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

/// The broker credential use cases: list (masked), update, delete, connection test.
///
/// Authorization is decided before a call reaches this service (see [`crate::capability::authorize`]); the
/// cipher is passed per call because the key ring can be reloaded while the service runs.
#[derive(Clone)]
pub struct CredentialService {
    pub(super) credentials: Arc<dyn CredentialRepository>,
    audit: Arc<dyn AuditRepository>,
    pub(super) clock: Arc<dyn Clock>,
    max_per_user: usize,
    cutover: CutoverGate,
    /// What rows showed when listed before, shared by the clones of this service.
    shown: Arc<ShownRows>,
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
            max_per_user: crate::limits::DEFAULT_MAX_CREDENTIALS_PER_USER,
            cutover: CutoverGate::closed(),
            shown: Arc::default(),
        }
    }

    /// The same service deciding on unbound rows by `gate` (by default, none is read).
    pub fn with_cutover(mut self, gate: CutoverGate) -> Self {
        self.cutover = gate;
        self
    }

    /// The same service allowing at most `max` stored credentials per user.
    pub fn with_max_per_user(mut self, max: usize) -> Self {
        self.max_per_user = max;
        self
    }

    /// The masked credentials of `target`, ordered by broker. A row that cannot be read is
    /// reported as undecryptable, never as an error of the whole list.
    pub async fn list(
        &self,
        cipher: &dyn CredentialCipher,
        ctx: &RequestContext,
        target: UserId,
    ) -> Result<Vec<CredentialStatus>, DomainError> {
        let rows = self.list_rows(ctx, target).await?;
        Ok(self.statuses(cipher, ctx, &rows).await)
    }

    /// Records `action` when `ctx` is an operator reading another user's (`target`'s) data.
    async fn record_operator_access(
        &self,
        ctx: &RequestContext,
        target: UserId,
        action: AuditAction,
    ) {
        if ctx.is_operator_access(target) {
            self.record(self.event(ctx, target, action, None, "success", None))
                .await;
        }
    }

    /// The stored rows of `target`, recording an operator's read of another user's rows.
    async fn list_rows(
        &self,
        ctx: &RequestContext,
        target: UserId,
    ) -> Result<Vec<StoredCredential>, DomainError> {
        let rows = self.credentials.list(target).await?;
        self.record_operator_access(ctx, target, AuditAction::OperatorRead)
            .await;
        Ok(rows)
    }

    /// What is stored for `target` when no key is available (a key outage): which halves exist
    /// and the metadata, with no mask and `status: key_unavailable`, so that a trader sees the
    /// keys as stored but unavailable rather than absent. Nothing is decrypted or verified.
    pub async fn list_stored(
        &self,
        ctx: &RequestContext,
        target: UserId,
    ) -> Result<Vec<CredentialStatus>, DomainError> {
        let rows = self.list_rows(ctx, target).await?;
        Ok(rows
            .iter()
            .map(|row| CredentialStatus {
                broker: row.broker.to_string(),
                label: row.label.clone(),
                has_api_key: row.api_key_encrypted.is_some(),
                has_api_secret: row.api_secret_encrypted.is_some(),
                api_key_masked: None,
                api_secret_masked: None,
                updated_at: row.updated_at,
                last_test_status: row.last_test_status.clone(),
                last_tested_at: row.last_tested_at,
                trading_enabled: row.trading_enabled,
                status: CredentialHealth::KeyUnavailable,
            })
            .collect())
    }

    /// Applies an update request in one transaction (the rows are read inside it) and returns
    /// the new list.
    ///
    /// When a concurrent writer changes the same rows between the read and the write, the
    /// transaction writes nothing and the request is planned again on fresh rows, so no
    /// acknowledged write is lost and no row mixes halves of two requests.
    pub async fn update(
        &self,
        cipher: &dyn CredentialCipher,
        ctx: &RequestContext,
        target: UserId,
        request: Vec<CredentialUpdate>,
    ) -> Result<Vec<CredentialStatus>, DomainError> {
        // Consent is the owner's alone; an operator may only withdraw it.
        if ctx.is_operator_access(target) && request.iter().any(|e| e.trading_enabled == Some(true))
        {
            return Err(AccessDenied::OwnerConsentOnly.into());
        }
        let mut mode = LazyMode::new(&self.cutover);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let known = mode.known();
            let mut refused = None;
            let mut planner = |stored: &[StoredCredential]| -> WritePlan {
                match self.prepare(cipher, ctx, target, stored, request.clone(), known) {
                    Ok(plan) => plan,
                    Err(error) => {
                        refused = Some(error);
                        WritePlan::Abort
                    }
                }
            };
            let written = self.credentials.update(target, &mut planner).await;
            match refused {
                Some(Refusal::Domain(error)) => return Err(error),
                // Read outside the transaction, then planned again (at most once per call).
                Some(Refusal::NeedCutoverMode) => {
                    mode.set(self.cutover.mode().await);
                    continue;
                }
                None => {}
            }
            match written {
                Ok(rows) => return Ok(self.statuses(cipher, ctx, &rows).await),
                Err(RepositoryError::StaleVersion) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(DomainError::Busy)
    }

    /// One page of the audit trail of `target`, newest first, and its total. An operator reading
    /// someone else's trail is itself recorded (after the page is read, so it is not in it).
    pub async fn audit_trail(
        &self,
        ctx: &RequestContext,
        target: UserId,
        page: crate::user::Page,
    ) -> Result<(Vec<AuditEvent>, u64), DomainError> {
        let trail = self.audit.list(target, page).await?;
        self.record_operator_access(ctx, target, AuditAction::OperatorAuditRead)
            .await;
        Ok(trail)
    }

    /// Deletes the credential of `target` for `broker`; the audit event is committed with it.
    pub async fn delete(
        &self,
        ctx: &RequestContext,
        target: UserId,
        broker: &BrokerId,
    ) -> Result<(), DomainError> {
        let event = self.event(
            ctx,
            target,
            AuditAction::Delete,
            Some(broker),
            "success",
            None,
        );
        if !self.credentials.delete(target, broker, &event).await? {
            return Err(DomainError::NotFound("Broker credential"));
        }
        Ok(())
    }

    /// Runs a connection test: values in the request override stored ones; the outcome is
    /// stored on the existing row and audited. Missing halves answer
    /// [`TestOutcome::MissingKeys`] without calling the broker.
    pub async fn test(
        &self,
        cipher: &dyn CredentialCipher,
        probe: &dyn BrokerProbe,
        ctx: &RequestContext,
        target: UserId,
        request: CredentialTest,
    ) -> Result<TestResult, DomainError> {
        let rows = self.credentials.list(target).await?;
        let stored = rows.iter().find(|row| row.broker == request.broker);
        let readable = match stored {
            Some(row) => {
                LazyMode::new(&self.cutover)
                    .admits(cipher.verify_binding(row))
                    .await
            }
            None => false,
        };
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
                TestOutcome::Probed(probe.probe(&request.broker, key, secret).await)
            }
            _ => TestOutcome::MissingKeys,
        };
        let tested_at = self.clock.now();
        let status = outcome.status();
        if stored.is_some() {
            self.credentials
                .record_test(target, &request.broker, status.as_str(), tested_at)
                .await?;
        }
        self.record(self.event(
            ctx,
            target,
            AuditAction::Test,
            Some(&request.broker),
            status.as_str(),
            stored.and_then(|r| r.key_id.clone()),
        ))
        .await;
        Ok(TestResult {
            broker: request.broker,
            outcome,
            tested_at,
        })
    }

    /// What an update writes, given the rows seen inside its transaction: the plan, sealed
    /// (encrypted and bound), with one audit event per mutation.
    fn prepare(
        &self,
        cipher: &dyn CredentialCipher,
        ctx: &RequestContext,
        target: UserId,
        stored: &[StoredCredential],
        request: Vec<CredentialUpdate>,
        mode: Option<CutoverMode>,
    ) -> Result<WritePlan, Refusal> {
        let plan = plan_update(stored, request).map_err(DomainError::from)?;
        if plan.is_empty() {
            return Ok(WritePlan::Nothing);
        }
        let created = plan
            .iter()
            .filter(|change| {
                matches!(
                    change,
                    PlannedChange::Upsert {
                        expected_version: None,
                        ..
                    }
                )
            })
            .count();
        let deleted = plan
            .iter()
            .filter(|change| matches!(change, PlannedChange::Delete { .. }))
            .count();
        // Only a request that adds rows is refused: one that replaces or removes never is, so
        // a user over a lowered limit can still tidy up.
        if created > 0 && stored.len() + created - deleted.min(stored.len()) > self.max_per_user {
            return Err(Refusal::Domain(
                ValidationError::TooManyCredentials {
                    max: self.max_per_user,
                }
                .into(),
            ));
        }
        let consent_only: Vec<bool> = plan
            .iter()
            .map(|change| {
                matches!(
                    change,
                    PlannedChange::Upsert {
                        keeps_test_result: true,
                        ..
                    }
                )
            })
            .collect();
        let mutations = self.seal(cipher, target, stored, plan, mode)?;
        let events = mutations
            .iter()
            .zip(consent_only)
            .map(|(mutation, consent_only)| match mutation {
                CredentialMutation::Write(write) if consent_only => self.event(
                    ctx,
                    target,
                    AuditAction::TradingConsent,
                    Some(&write.broker),
                    if write.trading_enabled {
                        "enabled"
                    } else {
                        "disabled"
                    },
                    Some(write.key_id.clone()),
                ),
                _ => self.mutation_event(ctx, target, mutation),
            })
            .collect();
        Ok(WritePlan::Apply { mutations, events })
    }

    /// Turns a plan into row writes: encrypts new values under the primary key, re-encrypts kept
    /// halves that are under another key, and binds every written row.
    ///
    /// A half is kept only from a row that may be read: binding a new row over a half moved
    /// into this one (or one no configured key opens) would make it readable, so such a
    /// request is refused and the user sends the half again.
    fn seal(
        &self,
        cipher: &dyn CredentialCipher,
        target: UserId,
        stored: &[StoredCredential],
        plan: Vec<PlannedChange>,
        mode: Option<CutoverMode>,
    ) -> Result<Vec<CredentialMutation>, Refusal> {
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
                    trading_enabled,
                    keeps_test_result,
                } => {
                    let current = stored.iter().find(|row| row.broker == broker);
                    let on_primary = current.and_then(|row| row.key_id.as_ref()) == Some(&primary);
                    let trusted = match current.map(|row| cipher.verify_binding(row)) {
                        None | Some(BindingCheck::Bound) => true,
                        Some(BindingCheck::Mismatch) => false,
                        Some(BindingCheck::Unbound) => match mode {
                            Some(mode) => mode == CutoverMode::Open,
                            None => return Err(Refusal::NeedCutoverMode),
                        },
                    };
                    let half = |name: &'static str,
                                change: HalfChange,
                                token: Option<&String>|
                     -> Result<Option<String>, Refusal> {
                        let unreadable = || {
                            Refusal::Domain(
                                ValidationError::UnreadableStoredHalf {
                                    broker: broker.to_string(),
                                    half: name,
                                }
                                .into(),
                            )
                        };
                        match change {
                            HalfChange::Keep => match token {
                                Some(_) if !trusted => Err(unreadable()),
                                Some(token) if !on_primary => match cipher.decrypt(token) {
                                    Ok(opened) => Ok(Some(cipher.encrypt(&opened.value)?.token)),
                                    Err(CipherError::Undecryptable | CipherError::NotUtf8) => {
                                        Err(unreadable())
                                    }
                                    Err(other) => Err(other.into()),
                                },
                                other => Ok(other.cloned()),
                            },
                            HalfChange::Clear => Ok(None),
                            HalfChange::Set(value) => Ok(Some(cipher.encrypt(&value)?.token)),
                        }
                    };
                    let api_key_encrypted = half(
                        "api_key",
                        api_key,
                        current.and_then(|r| r.api_key_encrypted.as_ref()),
                    )?;
                    let api_secret_encrypted = half(
                        "api_secret",
                        api_secret,
                        current.and_then(|r| r.api_secret_encrypted.as_ref()),
                    )?;
                    let version = expected_version.map_or(1, |v| v + 1);
                    let binding = cipher.bind(&BindingInput {
                        user_id: target,
                        broker: &broker,
                        version,
                        api_key_encrypted: api_key_encrypted.as_deref(),
                        api_secret_encrypted: api_secret_encrypted.as_deref(),
                        trading_enabled,
                    });
                    let kept_test = current.filter(|_| keeps_test_result);
                    Ok(CredentialMutation::Write(CredentialWrite {
                        broker,
                        expected_version,
                        version,
                        api_key_encrypted,
                        api_secret_encrypted,
                        key_id: primary.clone(),
                        binding,
                        updated_at: now,
                        trading_enabled,
                        last_test_status: kept_test.and_then(|row| row.last_test_status.clone()),
                        last_tested_at: kept_test.and_then(|row| row.last_tested_at),
                    }))
                }
            })
            .collect()
    }

    async fn statuses(
        &self,
        cipher: &dyn CredentialCipher,
        ctx: &RequestContext,
        rows: &[StoredCredential],
    ) -> Vec<CredentialStatus> {
        let mut statuses = Vec::with_capacity(rows.len());
        let mut mode = LazyMode::new(&self.cutover);
        // Rows shown before, unchanged and under the same keys, are shown again as they were.
        let generation = cipher.generation();
        let recalled = self.shown.recall(generation, rows);
        let mut opened = Vec::new();
        for (row, recalled) in rows.iter().zip(recalled) {
            if let Some(masks) = recalled {
                statuses.push(status_with(row, Some(masks)));
                continue;
            }
            let check = cipher.verify_binding(row);
            let admitted = mode.admits(check).await;
            let masks = masks_of(cipher, row, admitted);
            if let (BindingCheck::Bound, Some(masks)) = (check, &masks) {
                if generation.is_some() {
                    opened.push((row.clone(), masks.clone()));
                }
            }
            let status = status_with(row, masks);
            if status.status == CredentialHealth::Undecryptable {
                warn!(
                    "broker credential row {} (key id {}) cannot be decrypted or failed its binding check",
                    row.id,
                    row.key_id.as_ref().map_or("none", KeyId::as_str)
                );
                self.record(self.event(
                    ctx,
                    row.user_id,
                    AuditAction::BindingFailure,
                    Some(&row.broker),
                    "failure",
                    row.key_id.clone(),
                ))
                .await;
            }
            statuses.push(status);
        }
        self.shown.keep(generation, opened);
        statuses
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

    pub(super) fn event(
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
            actor_service: ctx.service.as_ref().map(ToString::to_string),
            detail: None,
        }
    }

    /// Records an audit event on its own (tests, reads, binding failures); a failure to record
    /// is logged, not returned, because what it describes has already happened. Changes are
    /// audited inside their transaction instead ([`Self::update`], [`Self::delete`]).
    pub(super) async fn record(&self, event: AuditEvent) {
        if let Err(error) = self.audit.record(&event).await {
            warn!(
                "audit event {} for user {} not recorded: {}",
                event.action.as_str(),
                event.target_user_id,
                crate::error::chain(&error)
            );
        }
    }
}

/// Why an update plan was not made.
enum Refusal {
    /// The request is refused.
    Domain(DomainError),
    /// A kept half comes from an unbound row: the cut-over mode decides, and it is read
    /// outside the transaction.
    NeedCutoverMode,
}

impl From<DomainError> for Refusal {
    fn from(error: DomainError) -> Self {
        Self::Domain(error)
    }
}

impl From<CipherError> for Refusal {
    fn from(error: CipherError) -> Self {
        Self::Domain(error.into())
    }
}

/// The public status of one row: decrypts each half and masks. `admitted` says whether the
/// row's binding check lets it be read (see [`crate::cutover`]).
pub fn status_of(
    cipher: &dyn CredentialCipher,
    row: &StoredCredential,
    admitted: bool,
) -> CredentialStatus {
    status_with(row, masks_of(cipher, row, admitted))
}

/// The masks of a row's halves, or `None` when the row cannot be read: not `admitted`, or a
/// half does not decrypt.
fn masks_of(
    cipher: &dyn CredentialCipher,
    row: &StoredCredential,
    admitted: bool,
) -> Option<Masks> {
    if !admitted {
        return None;
    }
    let open = |token: Option<&String>| -> Result<Option<String>, CipherError> {
        token
            .map(|t| cipher.decrypt(t).map(|o| mask(o.value.expose_secret())))
            .transpose()
    };
    Some(Masks {
        key: open(row.api_key_encrypted.as_ref()).ok()?,
        secret: open(row.api_secret_encrypted.as_ref()).ok()?,
    })
}

/// The public status of a row whose halves show `masks` (`None`: undecryptable).
fn status_with(row: &StoredCredential, masks: Option<Masks>) -> CredentialStatus {
    let readable = masks.is_some();
    let Masks { key, secret } = masks.unwrap_or(Masks {
        key: None,
        secret: None,
    });
    CredentialStatus {
        broker: row.broker.to_string(),
        label: row.label.clone(),
        has_api_key: row.api_key_encrypted.is_some(),
        has_api_secret: row.api_secret_encrypted.is_some(),
        api_key_masked: key,
        api_secret_masked: secret,
        updated_at: row.updated_at,
        last_test_status: row.last_test_status.clone(),
        last_tested_at: row.last_tested_at,
        trading_enabled: row.trading_enabled,
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
        MockAuditRepository, MockBrokerProbe, MockClock, MockCredentialCipher,
        MockCredentialRepository, Opened, Sealed,
    };
    use crate::test_support::{entry, stored_row};
    use crate::{CipherError, PlainSecret};
    use chrono::{TimeZone, Utc};
    use mockall::predicate::eq;

    /// The fake cipher's decryption: `enc:<plaintext>` under key `primary`; anything else fails.
    fn open_fake(token: &str) -> Result<Opened, CipherError> {
        match token.strip_prefix("enc:") {
            Some(plain) => Ok(Opened {
                value: PlainSecret::new(plain),
                key_id: KeyId::new("primary"),
            }),
            None => Err(CipherError::Undecryptable),
        }
    }

    /// The fake cipher's binding check: no tag is unbound, `forged` mismatches, any other binds.
    fn check_fake(row: &StoredCredential) -> BindingCheck {
        match row.binding.as_deref() {
            None => BindingCheck::Unbound,
            Some("forged") => BindingCheck::Mismatch,
            Some(_) => BindingCheck::Bound,
        }
    }

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
        cipher.expect_decrypt().returning(open_fake);
        cipher
            .expect_bind()
            .returning(|input| format!("bound:{}:{}", input.user_id, input.version));
        cipher.expect_verify_binding().returning(check_fake);
        // Nothing shown is kept between calls unless a test says so.
        cipher.expect_generation().return_const(None);
        cipher
    }

    fn cutover(mode: CutoverMode) -> CutoverGate {
        let mut stored = crate::ports::MockCutoverRepository::new();
        stored.expect_state().returning(move || {
            Ok(crate::CutoverState {
                mode,
                changed_at: Some(Utc::now()),
            })
        });
        CutoverGate::stored(Arc::new(stored), false)
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

    /// Expects one update transaction that sees `rows`, checks the plan with `check` and answers
    /// what `check` returns.
    fn expect_update(
        repo: &mut MockCredentialRepository,
        rows: Vec<StoredCredential>,
        check: impl Fn(&WritePlan) -> Result<Vec<StoredCredential>, RepositoryError> + Send + 'static,
    ) {
        repo.expect_update()
            .times(1)
            .returning(move |_, planner| check(&planner.plan(&rows)));
    }

    /// The service over `repo`, with an audit log that accepts everything and a fixed clock.
    fn service(repo: MockCredentialRepository) -> CredentialService {
        CredentialService::new(Arc::new(repo), quiet_audit(), clock())
    }

    /// `service.update` by user 1 of their own `entries`, with the fake cipher.
    async fn update(
        service: &CredentialService,
        entries: Vec<CredentialUpdate>,
    ) -> Result<Vec<CredentialStatus>, DomainError> {
        service
            .update(&fake_cipher(), &ctx(), UserId(1), entries)
            .await
    }

    /// Expects one update transaction that sees `rows` and must plan to write nothing.
    fn expect_abort(repo: &mut MockCredentialRepository, rows: Vec<StoredCredential>) {
        expect_update(repo, rows, |plan| {
            assert_eq!(plan, &WritePlan::Abort);
            Ok(vec![])
        });
    }

    /// `service.list` by user 1 of their own credentials, with the fake cipher.
    async fn list(service: &CredentialService) -> Vec<CredentialStatus> {
        service
            .list(&fake_cipher(), &ctx(), UserId(1))
            .await
            .unwrap()
    }

    /// `service.test` by user 1 of their own `request` through `probe`, with the fake cipher.
    async fn probe_with(
        service: &CredentialService,
        probe: &MockBrokerProbe,
        request: CredentialTest,
    ) -> Result<TestResult, DomainError> {
        service
            .test(&fake_cipher(), probe, &ctx(), UserId(1), request)
            .await
    }

    fn mutations(plan: &WritePlan) -> &[CredentialMutation] {
        match plan {
            WritePlan::Apply { mutations, .. } => mutations,
            _ => &[],
        }
    }

    #[tokio::test]
    async fn writes_are_audited_inside_their_transaction() {
        let mut repo = MockCredentialRepository::new();
        expect_update(
            &mut repo,
            vec![readable_row("kraken", "k", "s", 3)],
            |plan| {
                let WritePlan::Apply { mutations, events } = plan else {
                    panic!("expected writes, got {plan:?}");
                };
                assert_eq!((mutations.len(), events.len()), (2, 2));
                assert!(events.iter().all(|e| e.target_user_id == UserId(1)
                    && e.actor_id == Some(UserId(1))
                    && e.request_id.as_deref() == Some("req-1")
                    && e.outcome == "success"));
                assert!(events.iter().any(|e| e.action == AuditAction::Write
                    && e.broker.as_deref() == Some("binance")
                    && e.key_id.as_ref().map(KeyId::as_str) == Some("primary")));
                assert!(events.iter().any(|e| e.action == AuditAction::Delete
                    && e.broker.as_deref() == Some("kraken")
                    && e.key_id.is_none()));
                Ok(vec![])
            },
        );
        // Nothing is recorded apart from the transaction.
        let mut audit = MockAuditRepository::new();
        audit.expect_record().never();
        let service = CredentialService::new(Arc::new(repo), Arc::new(audit), clock());
        update(
            &service,
            vec![
                entry("binance", Some("new-key-1"), None),
                entry("kraken", Some(""), Some("")),
            ],
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn list_masks_every_stored_half() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list()
            .with(eq(UserId(1)))
            .returning(|_| Ok(vec![readable_row("binance", "abcd1234efgh", "xyz", 2)]));
        let service = service(repo);

        let list = list(&service).await;

        assert_eq!(list[0].api_key_masked.as_deref(), Some("••••••••efgh"));
        assert_eq!(list[0].api_secret_masked.as_deref(), Some("•••"));
        assert_eq!(list[0].status, CredentialHealth::Ok);
    }

    /// A cipher of generation `generation` that decrypts `enc:` tokens exactly `decryptions`
    /// times and checks bindings exactly `checks` times.
    fn counted_cipher(generation: u64, decryptions: usize, checks: usize) -> MockCredentialCipher {
        let mut cipher = MockCredentialCipher::new();
        cipher.expect_generation().return_const(Some(generation));
        cipher
            .expect_decrypt()
            .times(decryptions)
            .returning(open_fake);
        cipher
            .expect_verify_binding()
            .times(checks)
            .returning(check_fake);
        cipher
    }

    #[tokio::test]
    async fn a_row_shown_before_is_shown_again_without_decrypting_while_it_and_the_keys_stay() {
        let bound = readable_row("binance", "abcd1234efgh", "xyz", 2);
        let mut forged = readable_row("kraken", "kkkk", "ssss", 1);
        forged.id = 11;
        forged.binding = Some("forged".into());
        let mut rows = vec![bound.clone(), forged];
        let mut repo = MockCredentialRepository::new();
        let served = Arc::new(std::sync::Mutex::new(rows.clone()));
        let serving = Arc::clone(&served);
        repo.expect_list()
            .returning(move |_| Ok(serving.lock().unwrap().clone()));
        let service = service(repo);
        let list_with = |cipher: MockCredentialCipher| {
            let service = service.clone();
            async move { service.list(&cipher, &ctx(), UserId(1)).await.unwrap() }
        };

        // First read: both rows checked, the bound one's two halves decrypted.
        let first = list_with(counted_cipher(1, 2, 2)).await;
        // Again, same keys: only the forged row is checked again, nothing is decrypted.
        let again = list_with(counted_cipher(1, 0, 1)).await;
        assert_eq!(first, again);
        assert_eq!(again[0].api_key_masked.as_deref(), Some("••••••••efgh"));
        assert_eq!(again[1].status, CredentialHealth::Undecryptable);
        // Other keys (a reloaded ring): everything is decided anew.
        list_with(counted_cipher(2, 2, 2)).await;
        // The row written since: anew; its masks are those of the new content.
        rows[0].version = 3;
        rows[0].api_key_encrypted = Some("enc:new-key-0000".into());
        *served.lock().unwrap() = rows;
        let written = list_with(counted_cipher(2, 2, 2)).await;
        assert_eq!(written[0].api_key_masked.as_deref(), Some("••••••••0000"));
    }

    #[tokio::test]
    async fn during_a_key_outage_the_stored_halves_are_listed_without_masks() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list()
            .with(eq(UserId(1)))
            .returning(|_| Ok(vec![readable_row("binance", "abcd1234efgh", "xyz", 2)]));
        let service = service(repo);

        let list = service.list_stored(&ctx(), UserId(1)).await.unwrap();

        assert_eq!(list.len(), 1);
        assert_eq!((list[0].has_api_key, list[0].has_api_secret), (true, true));
        assert_eq!(
            (
                list[0].api_key_masked.as_deref(),
                list[0].api_secret_masked.as_deref()
            ),
            (None, None)
        );
        assert_eq!(list[0].status, CredentialHealth::KeyUnavailable);
    }

    #[tokio::test]
    async fn undecryptable_row_is_marked_and_audited_without_failing_the_list() {
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

        let list = list(&service).await;

        assert_eq!(list[0].status, CredentialHealth::Ok);
        assert_eq!(list[1].status, CredentialHealth::Undecryptable);
        assert!(list[1].has_api_key);
        assert_eq!(list[1].api_key_masked, None);
        assert_eq!(
            list[1].api_secret_masked, None,
            "no half of a suspect row is shown"
        );
    }

    #[tokio::test]
    async fn swapped_ciphertext_is_rejected() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list().returning(|_| {
            let mut row = readable_row("binance", "other-users-key", "s", 1);
            row.binding = Some("forged".into());
            Ok(vec![row])
        });
        let service = service(repo);

        let list = list(&service).await;

        assert_eq!(list[0].status, CredentialHealth::Undecryptable);
        assert_eq!(list[0].api_key_masked, None);
    }

    #[tokio::test]
    async fn an_unbound_row_is_read_only_while_cut_over_is_open() {
        for (mode, expected) in [
            (CutoverMode::Open, CredentialHealth::Ok),
            (CutoverMode::Closed, CredentialHealth::Undecryptable),
        ] {
            let mut repo = MockCredentialRepository::new();
            repo.expect_list().returning(|_| {
                let mut row = readable_row("binance", "python-key", "s", 1);
                row.binding = None;
                row.key_id = None;
                Ok(vec![row])
            });
            let service = service(repo).with_cutover(cutover(mode));
            let list = list(&service).await;
            assert_eq!(list[0].status, expected, "{mode}");
        }
    }

    #[tokio::test]
    async fn by_default_no_unbound_row_is_read() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list().returning(|_| {
            let mut row = readable_row("binance", "moved-key", "s", 1);
            row.binding = None;
            Ok(vec![row])
        });
        let service = service(repo);
        let list = list(&service).await;
        assert_eq!(list[0].status, CredentialHealth::Undecryptable);
    }

    #[tokio::test]
    async fn a_half_of_an_unreadable_row_is_never_carried_into_a_bound_one() {
        let mut forged = readable_row("binance", "other-users-key", "other-users-secret", 2);
        forged.binding = Some("forged".into());
        let mut unbound = readable_row("kraken", "moved-key", "moved-secret", 2);
        unbound.binding = None;
        for (row, mode) in [
            (forged, CutoverMode::Open),
            (unbound.clone(), CutoverMode::Closed),
        ] {
            let broker = row.broker.to_string();
            let mut repo = MockCredentialRepository::new();
            // Planned twice for the unbound row: once to learn that the mode is needed.
            repo.expect_update().returning(move |_, planner| {
                let plan = planner.plan(std::slice::from_ref(&row));
                assert_eq!(plan, WritePlan::Abort, "{plan:?}");
                Ok(vec![])
            });
            let service = service(repo).with_cutover(cutover(mode));
            let error = service
                .update(
                    &fake_cipher(),
                    &ctx(),
                    UserId(1),
                    vec![entry(&broker, Some("my-own-key"), None)],
                )
                .await
                .unwrap_err();
            assert_eq!(
                error,
                DomainError::Validation(ValidationError::UnreadableStoredHalf {
                    broker: broker.clone(),
                    half: "api_secret"
                })
            );
        }

        // While cut-over is open, the unbound (Python) row's kept half is bound by the write.
        let mut repo = MockCredentialRepository::new();
        let mut seen = 0;
        repo.expect_update().times(2).returning(move |_, planner| {
            let plan = planner.plan(std::slice::from_ref(&unbound));
            seen += 1;
            if seen == 1 {
                assert_eq!(plan, WritePlan::Abort);
            } else {
                assert!(
                    matches!(mutations(&plan), [CredentialMutation::Write(w)]
                        if w.api_secret_encrypted.as_deref() == Some("enc:moved-secret")
                        && w.binding == "bound:1:3"),
                    "{plan:?}"
                );
            }
            Ok(vec![])
        });
        let service = service(repo).with_cutover(cutover(CutoverMode::Open));
        update(&service, vec![entry("kraken", Some("my-own-key"), None)])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn operator_read_is_audited() {
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
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn update_encrypts_binds_and_writes_one_batch() {
        let mut repo = MockCredentialRepository::new();
        expect_update(&mut repo, vec![], |plan| {
            assert!(
                matches!(mutations(plan), [CredentialMutation::Write(w)]
                    if w.expected_version.is_none()
                    && w.version == 1
                    && w.api_key_encrypted.as_deref() == Some("enc:abcd1234efgh")
                    && w.api_secret_encrypted.is_none()
                    && w.binding == "bound:1:1"
                    && w.key_id.as_str() == "primary"),
                "{plan:?}"
            );
            Ok(vec![readable_row("binance", "abcd1234efgh", "x", 1)])
        });
        let service = service(repo);

        let list = update(&service, vec![entry("Binance", Some("abcd1234efgh"), None)])
            .await
            .unwrap();

        assert_eq!(list[0].api_key_masked.as_deref(), Some("••••••••efgh"));
    }

    #[tokio::test]
    async fn kept_half_under_an_old_key_is_reencrypted_under_the_primary() {
        let mut row = readable_row("binance", "old-key-value", "old-secret", 4);
        row.key_id = Some(KeyId::new("retired"));
        let mut repo = MockCredentialRepository::new();
        expect_update(&mut repo, vec![row], |plan| {
            assert!(
                matches!(mutations(plan), [CredentialMutation::Write(w)]
                    if w.expected_version == Some(4)
                    && w.version == 5
                    && w.api_key_encrypted.as_deref() == Some("enc:old-key-value")
                    && w.api_secret_encrypted.as_deref() == Some("enc:new-secret")),
                "{plan:?}"
            );
            Ok(vec![])
        });
        let service = service(repo);

        update(&service, vec![entry("binance", None, Some("new-secret"))])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_lost_compare_and_set_replans_on_fresh_rows() {
        let mut repo = MockCredentialRepository::new();
        let mut seq = mockall::Sequence::new();
        repo.expect_update()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, planner| {
                assert!(matches!(planner.plan(&[]), WritePlan::Apply { .. }));
                Err(RepositoryError::StaleVersion)
            });
        repo.expect_update()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, planner| {
                let fresh = [readable_row("binance", "theirs", "theirs", 1)];
                let plan = planner.plan(&fresh);
                assert!(
                    matches!(mutations(&plan), [CredentialMutation::Write(w)] if w.expected_version == Some(1)),
                    "{plan:?}"
                );
                Ok(vec![])
            });
        let service = service(repo);

        update(&service, vec![entry("binance", Some("mine"), Some("mine"))])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn endless_conflicts_end_busy() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_update()
            .times(crate::limits::MAX_WRITE_ATTEMPTS)
            .returning(|_, planner| {
                planner.plan(&[]);
                Err(RepositoryError::StaleVersion)
            });
        let service = service(repo);

        let error = update(&service, vec![entry("binance", Some("k"), None)])
            .await
            .unwrap_err();
        assert_eq!(error, DomainError::Busy);
    }

    #[tokio::test]
    async fn failed_encryption_writes_nothing() {
        let mut repo = MockCredentialRepository::new();
        expect_abort(&mut repo, vec![]);
        let mut cipher = MockCredentialCipher::new();
        cipher
            .expect_primary_key_id()
            .returning(|| KeyId::new("primary"));
        cipher
            .expect_encrypt()
            .returning(|_| Err(CipherError::NotConfigured));
        let service = service(repo);

        let error = service
            .update(
                &cipher,
                &ctx(),
                UserId(1),
                vec![entry("binance", Some("k"), None)],
            )
            .await
            .unwrap_err();
        assert_eq!(error, DomainError::KeyNotConfigured);
    }

    #[tokio::test]
    async fn duplicate_brokers_write_nothing() {
        let mut repo = MockCredentialRepository::new();
        expect_abort(&mut repo, vec![]);
        let service = service(repo);

        let error = update(
            &service,
            vec![entry("a", Some("1"), None), entry("A", Some("2"), None)],
        )
        .await
        .unwrap_err();
        assert_eq!(
            error,
            DomainError::Validation(ValidationError::DuplicateBroker("a".into()))
        );
    }

    #[tokio::test]
    async fn an_update_that_changes_nothing_writes_nothing() {
        let mut repo = MockCredentialRepository::new();
        expect_update(
            &mut repo,
            vec![readable_row("binance", "k", "s", 1)],
            |plan| {
                assert_eq!(plan, &WritePlan::Nothing);
                Ok(vec![readable_row("binance", "k", "s", 1)])
            },
        );
        let service = service(repo);

        let list = update(&service, vec![entry("binance", None, None)])
            .await
            .unwrap();
        assert_eq!(list.len(), 1);
    }

    #[tokio::test]
    async fn adding_past_the_cap_writes_nothing_but_replacing_at_the_cap_does() {
        let at_cap: Vec<_> = (0..3)
            .map(|i| readable_row(&format!("b{i}"), "k", "s", 1))
            .collect();
        let mut repo = MockCredentialRepository::new();
        let rows = at_cap.clone();
        expect_abort(&mut repo, rows);
        let capped = service(repo).with_max_per_user(3);
        let error = update(&capped, vec![entry("new", Some("k"), None)])
            .await
            .unwrap_err();
        assert_eq!(
            error,
            DomainError::Validation(ValidationError::TooManyCredentials { max: 3 })
        );

        let mut repo = MockCredentialRepository::new();
        expect_update(&mut repo, at_cap, |plan| {
            assert!(matches!(plan, WritePlan::Apply { .. }), "{plan:?}");
            Ok(vec![])
        });
        let capped = service(repo).with_max_per_user(3);
        update(&capped, vec![entry("b0", Some("k2"), None)])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn deleting_a_missing_broker_is_not_found() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_delete().returning(|_, _, _| Ok(false));
        let service = service(repo);

        let error = service
            .delete(&ctx(), UserId(1), &BrokerId::parse("binance").unwrap())
            .await
            .unwrap_err();
        assert_eq!(error, DomainError::NotFound("Broker credential"));
    }

    #[tokio::test]
    async fn test_uses_stored_values_unless_overridden_and_records_the_outcome() {
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
        let mut probe = MockBrokerProbe::new();
        probe
            .expect_probe()
            .withf(|_, key, secret| {
                key.expose_secret() == "stored-key" && secret.expose_secret() == "sent-secret"
            })
            .times(1)
            .returning(|_, _, _| ProbeStatus::Ok);
        let service = service(repo);

        let result = probe_with(
            &service,
            &probe,
            CredentialTest {
                broker: BrokerId::parse("binance").unwrap(),
                api_key: None,
                api_secret: Some(PlainSecret::new("sent-secret")),
            },
        )
        .await
        .unwrap();
        assert_eq!(result.outcome, TestOutcome::Probed(ProbeStatus::Ok));
    }

    #[tokio::test]
    async fn test_without_keys_does_not_call_the_broker() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_list().returning(|_| Ok(vec![]));
        repo.expect_record_test().never();
        let mut probe = MockBrokerProbe::new();
        probe.expect_probe().never();
        let service = service(repo);

        let result = probe_with(
            &service,
            &probe,
            CredentialTest {
                broker: BrokerId::parse("kraken").unwrap(),
                api_key: Some(PlainSecret::new("k")),
                api_secret: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(result.outcome, TestOutcome::MissingKeys);
        assert_eq!(result.outcome.status(), ProbeStatus::MissingCredentials);
    }

    #[tokio::test]
    async fn delete_is_audited_in_its_transaction_with_the_actor_and_request() {
        let mut repo = MockCredentialRepository::new();
        repo.expect_delete()
            .withf(|_, broker, e| {
                broker.as_str() == "binance"
                    && e.action == AuditAction::Delete
                    && e.request_id.as_deref() == Some("req-1")
                    && e.broker.as_deref() == Some("binance")
            })
            .times(1)
            .returning(|_, _, _| Ok(true));
        let mut audit = MockAuditRepository::new();
        audit.expect_record().never();
        let service = CredentialService::new(Arc::new(repo), Arc::new(audit), clock());

        service
            .delete(&ctx(), UserId(1), &BrokerId::parse("binance").unwrap())
            .await
            .unwrap();
    }
}
