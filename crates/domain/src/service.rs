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
    AuditRepository, Clock, CredentialCipher, CredentialMutation, CredentialRepository,
    CredentialWrite,
};
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
            match self.credentials.apply(target, &mutations) {
                Ok(rows) => {
                    for mutation in &mutations {
                        self.record_mutation(ctx, target, mutation);
                    }
                    return Ok(self.statuses(cipher, ctx, &rows));
                }
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

    fn record_mutation(&self, ctx: &RequestContext, target: UserId, mutation: &CredentialMutation) {
        match mutation {
            CredentialMutation::Write(write) => self.record(
                ctx,
                target,
                AuditAction::Write,
                Some(&write.broker),
                "success",
                Some(write.key_id.clone()),
            ),
            CredentialMutation::Delete { broker, .. } => self.record(
                ctx,
                target,
                AuditAction::Delete,
                Some(broker),
                "success",
                None,
            ),
        }
    }

    /// Records an audit event; a failure to record is logged, not returned, because the change
    /// it describes has already been committed.
    fn record(
        &self,
        ctx: &RequestContext,
        target: UserId,
        action: AuditAction,
        broker: Option<&BrokerId>,
        outcome: &str,
        key_id: Option<KeyId>,
    ) {
        let event = AuditEvent {
            occurred_at: self.clock.now(),
            actor_id: ctx.actor,
            target_user_id: target,
            action,
            broker: broker.map(ToString::to_string),
            outcome: outcome.to_owned(),
            key_id,
            request_id: ctx.request_id.clone(),
        };
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
