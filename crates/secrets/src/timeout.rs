//! `SECRET_MANAGER_TIMEOUT_SECONDS`: how long an HTTP provider (`vault`, `doppler`) may take to
//! answer, for the whole call.

use std::time::Duration;

#[cfg(any(feature = "vault", feature = "doppler"))]
use user_service_domain::ports::SecretSourceError;

#[cfg(any(feature = "vault", feature = "doppler"))]
use crate::variables::Variables;

/// How long an HTTP provider may take to answer, unless `SECRET_MANAGER_TIMEOUT_SECONDS` says.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Variable holding the HTTP providers' timeout in seconds.
#[cfg(any(feature = "vault", feature = "doppler"))]
const TIMEOUT_VARIABLE: &str = "SECRET_MANAGER_TIMEOUT_SECONDS";

/// `SECRET_MANAGER_TIMEOUT_SECONDS`: a positive number of seconds (decimals allowed), or
/// [`DEFAULT_TIMEOUT`] when unset or blank.
#[cfg(any(feature = "vault", feature = "doppler"))]
pub(crate) fn timeout_from(
    variables: &Variables,
    provider: &'static str,
) -> Result<Duration, SecretSourceError> {
    let Some(text) = variables.non_blank(TIMEOUT_VARIABLE) else {
        return Ok(DEFAULT_TIMEOUT);
    };
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| SecretSourceError {
            provider: provider.into(),
            key: TIMEOUT_VARIABLE.into(),
            reason: "not a positive number of seconds".into(),
        })
}
