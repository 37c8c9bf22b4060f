//! Who is acting: what the use cases write into their audit records.

use crate::principal::ServiceName;
use crate::user::UserId;

/// Who is acting, for audit records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The verified user (`None` for the command line and for a platform service).
    pub actor: Option<UserId>,
    /// The platform service acting, when the caller is one.
    pub service: Option<ServiceName>,
    /// Request id, echoed in audit records.
    pub request_id: Option<String>,
}

impl RequestContext {
    /// A context for `actor` within request `request_id`.
    pub fn new(actor: UserId, request_id: impl Into<String>) -> Self {
        Self {
            actor: Some(actor),
            service: None,
            request_id: Some(request_id.into()),
        }
    }

    /// A context for the platform service `service` within request `request_id`.
    pub fn for_service(service: ServiceName, request_id: impl Into<String>) -> Self {
        Self {
            actor: None,
            service: Some(service),
            request_id: Some(request_id.into()),
        }
    }

    /// The command line: no actor, no request.
    pub fn command_line() -> Self {
        Self {
            actor: None,
            service: None,
            request_id: None,
        }
    }

    /// Whether the actor acts on someone else's account.
    pub fn is_operator_access(&self, target: UserId) -> bool {
        self.actor.is_some_and(|actor| actor != target)
    }
}
