#![doc = include_str!("../README.md")]

mod error;
mod ready;
mod request;

use std::fmt;
use std::time::Duration;

use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use user_service_outbound::transport_cause;

pub use error::ClientError;
pub use ready::ReadyRequest;
pub use request::{BrokerRequest, Method};

/// Timeout of a signing call when the caller does not bring its own agent.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from user-service, in bytes.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// Asks user-service to sign broker requests with a trader's stored key.
///
/// Authenticates with the bearer token of a service principal listed in user-service's
/// `SIGNING_SERVICES`. Blocking; one instance can be shared between threads.
pub struct SigningClient {
    base_url: String,
    token: SecretString,
    agent: ureq::Agent,
}

impl fmt::Debug for SigningClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// The body of the signing route.
#[derive(Serialize)]
struct SignBody<'a> {
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
}

/// The answer of the signing route.
#[derive(Deserialize)]
struct SignAnswer {
    headers: std::collections::BTreeMap<String, SecretString>,
    #[serde(default)]
    query: String,
    #[serde(default)]
    body: String,
}

/// The error body of every user-service route.
#[derive(Deserialize)]
struct ErrorAnswer {
    detail: Option<String>,
    code: Option<String>,
    request_id: Option<String>,
}

impl SigningClient {
    /// A client of the user-service at `base_url` (`https://user-service.internal`), with
    /// [`DEFAULT_TIMEOUT`] per call.
    pub fn new(base_url: impl Into<String>, token: SecretString) -> Self {
        Self::with_timeout(base_url, token, DEFAULT_TIMEOUT)
    }

    /// A client whose calls give up after `timeout` (connection, request and answer together).
    /// Redirects are not followed: they would carry the token elsewhere.
    pub fn with_timeout(
        base_url: impl Into<String>,
        token: SecretString,
        timeout: Duration,
    ) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            token,
            agent: user_service_outbound::agent(timeout),
        }
    }

    /// Has `request` signed with the key user `user_id` stored for `broker`, and returns exactly
    /// what to send to the broker.
    ///
    /// Refusals come back as [`ClientError::Refused`] with user-service's status and code
    /// (`trading_not_enabled`, `signing_unsupported`, `signing_path_refused`,
    /// `credential_unusable`, …).
    pub fn sign(
        &self,
        user_id: i64,
        broker: &str,
        request: &BrokerRequest,
    ) -> Result<ReadyRequest, ClientError> {
        request.check()?;
        if broker.is_empty() {
            return Err(ClientError::InvalidRequest("broker is empty"));
        }
        let query = request.encoded_query();
        let body = request.encoded_body();
        let payload = serde_json::to_string(&SignBody {
            method: request.method().as_str(),
            path: request.path(),
            query: query.as_deref(),
            body: body.as_deref(),
        })
        .map_err(|_| ClientError::InvalidRequest("request cannot be serialised"))?;
        let url = format!(
            "{}/users/{user_id}/broker-credentials/{}/sign",
            self.base_url,
            path_segment(broker)
        );
        let response = self
            .agent
            .post(&url)
            .header(
                "Authorization",
                &format!("Bearer {}", self.token.expose_secret()),
            )
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .send(payload.as_str());
        let mut response =
            response.map_err(|e| ClientError::Transport(transport_cause(&e, "user-service")))?;
        let status = response.status().as_u16();
        let mut text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(|e| ClientError::Transport(transport_cause(&e, "user-service")))?;
        let result = if status == 200 {
            serde_json::from_str::<SignAnswer>(&text)
                .map_err(|_| ClientError::InvalidAnswer("200 without headers, query and body"))
                .map(|answer| {
                    ReadyRequest::new(
                        request.method(),
                        request.path().to_owned(),
                        answer.query,
                        answer.headers.into_iter().collect(),
                        answer.body,
                    )
                })
        } else {
            let answer = serde_json::from_str::<ErrorAnswer>(&text).ok();
            Err(ClientError::Refused {
                status,
                code: answer.as_ref().and_then(|a| a.code.clone()),
                detail: answer.as_ref().and_then(|a| a.detail.clone()),
                request_id: answer.and_then(|a| a.request_id),
            })
        };
        // The answer held the API key and the signature.
        text.zeroize();
        result
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
fn path_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_segment_is_percent_encoded() {
        assert_eq!(path_segment("binance"), "binance");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(path_segment("../x"), "..%2Fx");
    }

    #[test]
    fn debug_shows_no_token() {
        let client = SigningClient::new(
            "http://user-service",
            SecretString::from("eyJhbGciOiJIUzI1NiJ9.secret-token"),
        );
        assert!(!format!("{client:?}").contains("secret-token"));
    }
}
