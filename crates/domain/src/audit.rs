//! Audit events of credential access. An event never holds a value.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::credential::KeyId;
use crate::user::UserId;

/// What was done to a credential.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// A row was created or rewritten.
    Write,
    /// A row was deleted.
    Delete,
    /// A connection test ran.
    Test,
    /// An operator read another account's credentials.
    OperatorRead,
    /// A row failed its binding or decryption check on read.
    BindingFailure,
    /// `keys rotate` re-encrypted a row.
    Rotate,
    /// An operator read another account's audit trail.
    OperatorAuditRead,
    /// Cut-over mode was opened: unbound rows are read again (target: the whole database).
    CutoverOpen,
    /// Cut-over mode was closed: only bound rows are read (target: the whole database).
    CutoverClose,
    /// The owner turned trading with a key on (`enabled`) or off (`disabled`).
    TradingConsent,
    /// A platform service had a broker request signed with the key (`detail`: method and path).
    Sign,
}

impl AuditAction {
    /// Stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Write => "write",
            Self::Delete => "delete",
            Self::Test => "test",
            Self::OperatorRead => "operator_read",
            Self::BindingFailure => "binding_failure",
            Self::Rotate => "rotate",
            Self::OperatorAuditRead => "operator_audit_read",
            Self::CutoverOpen => "cutover_open",
            Self::CutoverClose => "cutover_close",
            Self::TradingConsent => "trading_consent",
            Self::Sign => "sign",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Write,
            Self::Delete,
            Self::Test,
            Self::OperatorRead,
            Self::BindingFailure,
            Self::Rotate,
            Self::OperatorAuditRead,
            Self::CutoverOpen,
            Self::CutoverClose,
            Self::TradingConsent,
            Self::Sign,
        ]
        .into_iter()
        .find(|a| a.as_str() == name)
    }
}

/// One audit record.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Who acted (`None` for the command line).
    pub actor_id: Option<UserId>,
    /// Whose credential.
    pub target_user_id: UserId,
    /// What was done.
    pub action: AuditAction,
    /// Which broker, when the action concerns one.
    pub broker: Option<String>,
    /// `success`, `failure`, or a test status.
    pub outcome: String,
    /// Key that encrypted what was written or read.
    pub key_id: Option<KeyId>,
    /// Request that caused it.
    pub request_id: Option<String>,
    /// The platform service that acted, when the actor is one (`actor_id` is then `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_service: Option<String>,
    /// What was done, when the action says more than its name: the method and path of a signed
    /// request (never its query or body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_round_trip() {
        for action in [
            AuditAction::Write,
            AuditAction::BindingFailure,
            AuditAction::Rotate,
            AuditAction::CutoverOpen,
            AuditAction::CutoverClose,
        ] {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(AuditAction::parse("nope"), None);
    }
}
