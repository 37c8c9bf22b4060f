//! Why a request was not signed.

use thiserror::Error;

/// Why `SigningClient::sign` returned no request. Never contains the token, a key or a
/// signature.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// user-service answered with an error status.
    #[error(
        "user-service refused to sign: HTTP {status}, code {}, {}",
        .code.as_deref().unwrap_or("none"),
        .detail.as_deref().unwrap_or("no detail")
    )]
    Refused {
        /// HTTP status (400, 401, 403, 404, 409, 422, 429, 503…).
        status: u16,
        /// Stable error code (`trading_not_enabled`, `signing_unsupported`,
        /// `signing_path_refused`, `credential_unusable`, …) when the answer had one.
        code: Option<String>,
        /// Human-readable explanation, when the answer had one.
        detail: Option<String>,
        /// Id to quote when asking about this call in user-service's logs.
        request_id: Option<String>,
    },
    /// user-service could not be reached or did not answer in time.
    #[error("user-service could not be reached: {0}")]
    Transport(String),
    /// user-service answered 200 with something that is not a signed request.
    #[error("unexpected answer from user-service: {0}")]
    InvalidAnswer(&'static str),
    /// The request cannot be signed as built.
    #[error("invalid broker request: {0}")]
    InvalidRequest(&'static str),
}

impl ClientError {
    /// The HTTP status user-service answered, for a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error code user-service answered, for a refusal that had one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}
