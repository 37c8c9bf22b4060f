//! The one place where errors become HTTP responses.
//!
//! Handlers return [`ApiError`]; domain and repository errors convert into it with `?`. The body
//! is `{"detail", "code"}` (plus `errors` for validation); the request-context middleware adds
//! `request_id`. A 5xx never reveals its cause: the cause is logged (it never contains a secret,
//! by construction of the error types below it).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use user_service_domain::{DomainError, ValidationError};

/// Detail of the 503 answered when the encryption key is missing or invalid (SPEC §4.3).
pub const KEY_NOT_CONFIGURED: &str = "Broker credentials encryption key is not configured";

/// One offending field of a validation error.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// Field name (`credentials[0].api_secret`, `email`, …).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An error answered to an HTTP client.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    allow: Option<String>,
    retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

/// The JSON shape of every error answer (documentation of what [`ApiError`] serialises, plus
/// the `request_id` the request-context middleware adds).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Human-readable message (the original service's strings where it had one).
    pub detail: String,
    /// Stable snake_case code.
    pub code: String,
    /// Id of the request (also in the `X-Request-ID` header).
    pub request_id: String,
    /// Offending fields of a validation error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl ApiError {
    /// An error with a status, a stable code and a human message.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            allow: None,
            retry_after: None,
        }
    }

    /// 400.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 401 `Missing token` / `Invalid token`.
    pub fn unauthorized(detail: &'static str) -> Self {
        let code = if detail == "Missing token" {
            "missing_token"
        } else {
            "invalid_token"
        };
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    /// 403.
    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 422 with the offending fields.
    pub fn validation(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_error", detail)
        }
    }

    /// 405 with the `Allow` header.
    pub fn method_not_allowed(allow: &str) -> Self {
        Self {
            allow: Some(allow.to_owned()),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method Not Allowed",
            )
        }
    }

    /// 429 with `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many attempts; retry later",
            )
        }
    }

    /// 503 `Broker credentials encryption key is not configured`.
    pub fn key_not_configured() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "encryption_key_not_configured",
            KEY_NOT_CONFIGURED,
        )
    }

    /// 503 for an unavailable dependency; the cause is logged, not answered.
    pub fn unavailable(cause: &str) -> Self {
        log::warn!("dependency unavailable: {cause}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Service temporarily unavailable; retry later",
        )
    }

    /// 500; the cause is logged, not answered.
    pub fn internal(cause: &str) -> Self {
        log::error!("internal error: {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Internal server error",
        )
    }

    /// The `detail` message.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
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
        })
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        let detail = error.to_string();
        if error.is_bad_request() {
            let code = match error {
                ValidationError::DuplicateBroker(_) => "duplicate_broker",
                _ => "broker_required",
            };
            return Self::bad_request(code, detail);
        }
        let field = error.field().unwrap_or("body").to_owned();
        Self::validation(
            detail.clone(),
            vec![FieldError {
                field,
                message: detail,
            }],
        )
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Validation(v) => v.into(),
            DomainError::AccessDenied(denied) => {
                Self::forbidden("missing_capability", denied.to_string())
            }
            DomainError::NotFound(what) => Self::not_found(format!("{what} not found")),
            DomainError::Conflict(message) => Self::new(StatusCode::CONFLICT, "conflict", message),
            DomainError::KeyNotConfigured => Self::key_not_configured(),
            DomainError::Unavailable(cause) => Self::unavailable(&cause),
            DomainError::Internal(cause) => Self::internal(&cause),
            other => Self::internal(&other.to_string()),
        }
    }
}

impl From<user_service_domain::RepositoryError> for ApiError {
    fn from(error: user_service_domain::RepositoryError) -> Self {
        DomainError::from(error).into()
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        Self::unavailable("blocking thread pool is shut down")
    }
}
