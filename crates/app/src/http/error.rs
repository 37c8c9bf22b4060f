//! The one place where errors become HTTP responses, and the vocabulary of their codes.
//!
//! Handlers return [`ApiError`]; domain errors convert into it with `?`. The body is
//! `{"detail", "code"}` (plus `errors` for validation); the request-context middleware adds
//! `request_id`. Every `code` is an [`ErrorCode`]: a client can rely on the list. A 5xx never
//! reveals its cause: the cause's whole chain is logged once, here (it never contains a secret,
//! by construction of the error types below it).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use user_service_domain::{
    chain, AccessDenied, CredentialStatus, DomainError, SignError, Unique, ValidationError,
};

/// Detail of the 503 answered when the encryption key is missing or invalid.
pub const KEY_NOT_CONFIGURED: &str = "Broker credentials encryption key is not configured";
/// Detail of the 409 answered when an e-mail address is already registered.
pub const EMAIL_TAKEN: &str = "Email already registered";

/// Every `code` an error body may carry, with the status it goes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the broker identifier is blank.
    BrokerRequired,
    /// 400: one broker appears twice in one request.
    DuplicateBroker,
    /// 400: the body is not valid JSON.
    MalformedJson,
    /// 400: the body could not be read.
    InvalidBody,
    /// 400: `X-Customer-ID` / `X-User-ID` is not an integer.
    InvalidActorHeader,
    /// 401: no bearer token.
    MissingToken,
    /// 401: the token is invalid, expired, not yet valid, or of the wrong kind.
    InvalidToken,
    /// 401: wrong e-mail or password.
    InvalidCredentials,
    /// 403: a capability the route requires is missing.
    MissingCapability,
    /// 403: the action is reserved to the account itself and operators.
    OperationNotPermitted,
    /// 403: `X-Customer-ID` / `X-User-ID` names someone else than the token.
    ActorMismatch,
    /// 403: a service principal's token on a route only users may use.
    ServicePrincipal,
    /// 403: a user's token on the signing route, which only platform services may use.
    ServicePrincipalRequired,
    /// 403: a platform service that `SIGNING_SERVICES` does not list.
    SigningServiceNotListed,
    /// 403: the credential's owner has not allowed trading with it.
    TradingNotEnabled,
    /// 403: only the owner may allow trading with a key.
    OwnerConsentRequired,
    /// 403: the signing policy does not allow this method and path for this broker.
    SigningPathRefused,
    /// 404: no such route, user or credential.
    NotFound,
    /// 405: the route exists but not with this method (`Allow` lists the others).
    MethodNotAllowed,
    /// 409: the e-mail address is already registered.
    EmailTaken,
    /// 409: the user id is already registered.
    UserExists,
    /// 409: concurrent writers kept changing the same rows; nothing was written.
    Busy,
    /// 409: requests to this broker cannot be signed (its API sends the secret itself, or no
    /// signer knows it).
    SigningUnsupported,
    /// 409: the stored credential cannot sign (a half missing, undecryptable, failing its
    /// integrity check, or not of the broker's form).
    CredentialUnusable,
    /// 413: the body is larger than the limit.
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 422: a field breaks a rule (`errors` lists them).
    ValidationError,
    /// 429: too many attempts (`Retry-After` says when to try again).
    RateLimited,
    /// 500: an unexpected failure (logged with its cause).
    InternalError,
    /// 503: the encryption key is missing or invalid.
    EncryptionKeyNotConfigured,
    /// 503: the database or another dependency is unavailable (`Retry-After`).
    ServiceUnavailable,
    /// 503: the database schema is older than this program: run `user-service migrate`.
    SchemaBehind,
}

impl ErrorCode {
    /// The code as it appears in bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BrokerRequired => "broker_required",
            Self::DuplicateBroker => "duplicate_broker",
            Self::MalformedJson => "malformed_json",
            Self::InvalidBody => "invalid_body",
            Self::InvalidActorHeader => "invalid_actor_header",
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
            Self::InvalidCredentials => "invalid_credentials",
            Self::MissingCapability => "missing_capability",
            Self::OperationNotPermitted => "operation_not_permitted",
            Self::ActorMismatch => "actor_mismatch",
            Self::ServicePrincipal => "service_principal",
            Self::ServicePrincipalRequired => "service_principal_required",
            Self::SigningServiceNotListed => "signing_service_not_listed",
            Self::TradingNotEnabled => "trading_not_enabled",
            Self::OwnerConsentRequired => "owner_consent_required",
            Self::SigningPathRefused => "signing_path_refused",
            Self::SigningUnsupported => "signing_unsupported",
            Self::CredentialUnusable => "credential_unusable",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::EmailTaken => "email_taken",
            Self::UserExists => "user_exists",
            Self::Busy => "busy",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::ValidationError => "validation_error",
            Self::RateLimited => "rate_limited",
            Self::InternalError => "internal_error",
            Self::EncryptionKeyNotConfigured => "encryption_key_not_configured",
            Self::ServiceUnavailable => "service_unavailable",
            Self::SchemaBehind => "schema_behind",
        }
    }

    /// The status that goes with the code.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BrokerRequired
            | Self::DuplicateBroker
            | Self::MalformedJson
            | Self::InvalidBody
            | Self::InvalidActorHeader => StatusCode::BAD_REQUEST,
            Self::MissingToken | Self::InvalidToken | Self::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            Self::MissingCapability
            | Self::OperationNotPermitted
            | Self::ActorMismatch
            | Self::ServicePrincipal
            | Self::ServicePrincipalRequired
            | Self::SigningServiceNotListed
            | Self::TradingNotEnabled
            | Self::OwnerConsentRequired
            | Self::SigningPathRefused => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::EmailTaken
            | Self::UserExists
            | Self::Busy
            | Self::SigningUnsupported
            | Self::CredentialUnusable => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ValidationError => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::EncryptionKeyNotConfigured | Self::ServiceUnavailable | Self::SchemaBehind => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

/// One offending field of a validation error.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// Field name (`credentials[0].api_secret`, `email`, …).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_UNAVAILABLE_SECS: u64 = 1;

/// An error answered to an HTTP client.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: ErrorCode,
    detail: String,
    errors: Vec<FieldError>,
    allow: Option<String>,
    retry_after: Option<u64>,
    stored: Option<Box<[CredentialStatus]>>,
}

#[derive(Serialize)]
struct Body<'a> {
    detail: &'a str,
    code: ErrorCode,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
    #[serde(skip_serializing_if = "Option::is_none")]
    credentials: Option<&'a [CredentialStatus]>,
}

/// The JSON shape of every error answer (documentation of what [`ApiError`] serialises, plus
/// the `request_id` the request-context middleware adds).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Human-readable message (the original service's strings where it had one).
    pub detail: String,
    /// Stable snake_case code.
    pub code: ErrorCode,
    /// Id of the request (also in the `X-Request-ID` header).
    pub request_id: String,
    /// Offending fields of a validation error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Only on a credential list answered during a key outage (`encryption_key_not_configured`):
    /// what is stored, without masks, each with `status: key_unavailable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<CredentialStatus>>,
}

impl ApiError {
    /// An error with a code (which gives the status) and a human message.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            allow: None,
            retry_after: None,
            stored: None,
        }
    }

    /// 401 `Missing token`.
    pub fn missing_token() -> Self {
        Self::new(ErrorCode::MissingToken, "Missing token")
    }

    /// 401 `Invalid token`.
    pub fn invalid_token() -> Self {
        Self::new(ErrorCode::InvalidToken, "Invalid token")
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    /// 422 with the offending fields.
    pub fn validation(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(ErrorCode::ValidationError, detail)
        }
    }

    /// 422 about one field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::validation(
            message.clone(),
            vec![FieldError {
                field: field.to_owned(),
                message,
            }],
        )
    }

    /// 405 with the `Allow` header.
    pub fn method_not_allowed(allow: &str) -> Self {
        Self {
            allow: Some(allow.to_owned()),
            ..Self::new(ErrorCode::MethodNotAllowed, "Method Not Allowed")
        }
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(ErrorCode::RateLimited, "Too many attempts; retry later")
        }
    }

    /// 503 `Broker credentials encryption key is not configured`.
    pub fn key_not_configured() -> Self {
        Self::new(ErrorCode::EncryptionKeyNotConfigured, KEY_NOT_CONFIGURED)
    }

    /// The same 503 carrying what is stored (metadata only, no mask), so that a client can show
    /// the keys as stored but unavailable instead of absent.
    pub fn key_not_configured_with(stored: Vec<CredentialStatus>) -> Self {
        Self {
            stored: Some(stored.into_boxed_slice()),
            ..Self::key_not_configured()
        }
    }

    /// 503 with `Retry-After` for an unavailable dependency; `cause` (the whole chain, never a
    /// secret) is logged, not answered.
    pub fn unavailable(cause: &dyn std::error::Error) -> Self {
        log::warn!("dependency unavailable: {}", chain(cause));
        Self {
            retry_after: Some(RETRY_AFTER_UNAVAILABLE_SECS),
            ..Self::new(
                ErrorCode::ServiceUnavailable,
                "Service temporarily unavailable; retry later",
            )
        }
    }

    /// 500; `cause` (the whole chain) is logged, not answered.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        log::error!("internal error: {}", chain(cause));
        Self::new(ErrorCode::InternalError, "Internal server error")
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The `detail` message.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code.status().as_u16(), self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.code.status());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(allow) = &self.allow {
            response.insert_header((header::ALLOW, allow.as_str()));
        }
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        response.json(Body {
            detail: &self.detail,
            code: self.code,
            errors: &self.errors,
            credentials: self.stored.as_deref(),
        })
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        let detail = error.to_string();
        match error {
            ValidationError::DuplicateBroker(_) => Self::new(ErrorCode::DuplicateBroker, detail),
            ValidationError::BrokerRequired => Self::new(ErrorCode::BrokerRequired, detail),
            _ => Self::invalid_field(error.field().unwrap_or("body"), detail),
        }
    }
}

impl From<AccessDenied> for ApiError {
    fn from(denied: AccessDenied) -> Self {
        let code = match denied {
            AccessDenied::OperationNotPermitted => ErrorCode::OperationNotPermitted,
            AccessDenied::ServicePrincipal => ErrorCode::ServicePrincipal,
            AccessDenied::ServiceRequired => ErrorCode::ServicePrincipalRequired,
            AccessDenied::ServiceNotListed => ErrorCode::SigningServiceNotListed,
            AccessDenied::OwnerConsentOnly => ErrorCode::OwnerConsentRequired,
            _ => ErrorCode::MissingCapability,
        };
        Self::new(code, denied.to_string())
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Validation(v) => v.into(),
            DomainError::PasswordPolicy(violation) => Self::invalid_field("password", violation.0),
            DomainError::AccessDenied(denied) => denied.into(),
            DomainError::NotFound(what) => Self::not_found(format!("{what} not found")),
            DomainError::Duplicate(Unique::Email) => Self::new(ErrorCode::EmailTaken, EMAIL_TAKEN),
            DomainError::Duplicate(Unique::UserId) => {
                Self::new(ErrorCode::UserExists, "User already registered")
            }
            DomainError::Duplicate(other) => {
                Self::new(ErrorCode::Busy, format!("Duplicate {other}; retry"))
            }
            DomainError::Busy => Self::new(
                ErrorCode::Busy,
                "Changed concurrently by another request; retry",
            ),
            DomainError::KeyNotConfigured => Self::key_not_configured(),
            DomainError::Signing(refusal) => refusal.into(),
            DomainError::DependencyUnavailable(_) => Self::unavailable(&error),
            DomainError::Storage(ref storage) => match storage {
                user_service_domain::RepositoryError::Unavailable { .. } => {
                    Self::unavailable(&error)
                }
                user_service_domain::RepositoryError::SchemaBehind => Self {
                    retry_after: Some(RETRY_AFTER_UNAVAILABLE_SECS),
                    ..Self::new(
                        ErrorCode::SchemaBehind,
                        "The database schema is behind: run user-service migrate",
                    )
                },
                _ => Self::internal(&error),
            },
            _ => Self::internal(&error),
        }
    }
}

impl From<SignError> for ApiError {
    fn from(error: SignError) -> Self {
        match error {
            SignError::Unsupported => Self::new(
                ErrorCode::SigningUnsupported,
                "Requests to this broker cannot be signed: its API sends the secret itself, or \
                 no signer knows its protocol",
            ),
            SignError::PathNotAllowed => Self::new(
                ErrorCode::SigningPathRefused,
                "The signing policy does not allow this method and path for this broker",
            ),
            SignError::InvalidRequest(reason) => {
                Self::invalid_field("request", format!("Invalid broker request: {reason}"))
            }
            SignError::TradingNotEnabled => Self::new(
                ErrorCode::TradingNotEnabled,
                "The owner has not allowed the platform to trade with this key",
            ),
            SignError::InvalidSecret => Self::new(
                ErrorCode::CredentialUnusable,
                "The stored API key or secret does not have the form this broker uses",
            ),
            SignError::UnusableCredential(reason) => {
                Self::new(ErrorCode::CredentialUnusable, reason)
            }
        }
    }
}

impl From<user_service_domain::RepositoryError> for ApiError {
    fn from(error: user_service_domain::RepositoryError) -> Self {
        DomainError::from(error).into()
    }
}

#[cfg(test)]
mod tests {
    use user_service_domain::{Cause, RepositoryError};

    use super::*;

    #[test]
    fn every_code_serialises_as_its_name() {
        for code in [
            ErrorCode::BrokerRequired,
            ErrorCode::EncryptionKeyNotConfigured,
            ErrorCode::SchemaBehind,
            ErrorCode::OperationNotPermitted,
        ] {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
    }

    #[test]
    fn a_taken_email_and_a_lost_race_are_told_apart() {
        let taken = ApiError::from(DomainError::Duplicate(Unique::Email));
        assert_eq!(
            (taken.code(), taken.detail()),
            (ErrorCode::EmailTaken, EMAIL_TAKEN)
        );
        assert_eq!(ApiError::from(DomainError::Busy).code(), ErrorCode::Busy);
    }

    #[test]
    fn an_unavailable_database_is_a_503_with_retry_after_and_no_cause() {
        let error = ApiError::from(DomainError::from(RepositoryError::Unavailable {
            operation: "list",
            cause: Cause::message("connection refused to db.internal"),
        }));
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        assert!(!error.detail().contains("db.internal"));
    }
}
