//! Who is acting: what the use cases write into their audit records.

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

    /// The command line: no actor, no request.
    pub fn command_line() -> Self {
        Self {
            actor: None,
            request_id: None,
        }
    }

    /// Whether the actor acts on someone else's account.
    pub fn is_operator_access(&self, target: UserId) -> bool {
        self.actor.is_some_and(|actor| actor != target)
    }
}
