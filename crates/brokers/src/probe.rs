//! The connection test: one real signed, read-only call to the broker's account endpoint.
//!
//! | broker | call | rejected credentials |
//! |---|---|---|
//! | `binance` | `GET /api/v3/account`, signed by [`BrokerProtocols`] | HTTP 401/403, or a 400 with Binance code -2014, -2015 or -1022 |
//! | `kraken` | `POST /0/private/Balance`, signed by [`BrokerProtocols`] | `EAPI:Invalid key`, `EAPI:Invalid signature`, `EGeneral:Permission denied`, or a secret that is not base64 |
//! | `alpaca` | `GET /v2/account` with `APCA-API-KEY-ID` and `APCA-API-SECRET-KEY` | HTTP 401/403 |
//!
//! Anything else (timeout, refused connection, TLS failure, 5xx, unexpected body, a broker
//! without adapter) is `network_error`. Every failed check logs one WARN line naming the broker,
//! the host and the cause, never a path, query, key or signature.

use std::fmt;
use std::time::Duration;

use chrono::Utc;
use log::warn;
use secrecy::ExposeSecret;
use user_service_domain::ports::ProbeStatus;
use user_service_domain::{
    BrokerId, HttpMethod, PlainSecret, RequestSigner, SignError, SignedRequest, UnsignedRequest,
};
use user_service_outbound::transport_cause;

use crate::signing::{BrokerProtocols, Protocol};

/// Largest broker answer read, in bytes; an account answer is a few KiB.
const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// Base URLs of the brokers that have an adapter (`https://api.binance.com`, …), without a
/// trailing path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUrls {
    /// Binance REST base URL.
    pub binance: String,
    /// Kraken REST base URL.
    pub kraken: String,
    /// Alpaca trading API base URL.
    pub alpaca: String,
}

/// Checks broker credentials over HTTP(S), blocking the calling thread for at most the timeout.
pub struct HttpBrokerProbe {
    urls: ProbeUrls,
    agent: ureq::Agent,
    signer: BrokerProtocols,
}

impl fmt::Debug for HttpBrokerProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBrokerProbe")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

/// Why a check did not succeed: the status to report and the cause to log.
struct Failure {
    status: ProbeStatus,
    cause: String,
}

impl Failure {
    fn unauthorized(cause: impl Into<String>) -> Self {
        Self {
            status: ProbeStatus::Unauthorized,
            cause: cause.into(),
        }
    }

    fn network(cause: impl Into<String>) -> Self {
        Self {
            status: ProbeStatus::NetworkError,
            cause: cause.into(),
        }
    }
}

impl HttpBrokerProbe {
    /// A probe with these base URLs; each check gives up after `timeout` (connection, TLS,
    /// request and answer together).
    pub fn new(urls: ProbeUrls, timeout: Duration) -> Self {
        Self {
            urls,
            // No redirect: it would re-send the key headers to wherever it points.
            agent: user_service_outbound::agent(timeout),
            signer: BrokerProtocols::new(),
        }
    }

    /// Whether `broker` has an automated check.
    pub fn supports(broker: &BrokerId) -> bool {
        Protocol::of(broker).is_some()
    }

    /// Checks the credentials against the broker. Blocking.
    pub fn check(
        &self,
        broker: &BrokerId,
        api_key: &PlainSecret,
        api_secret: &PlainSecret,
    ) -> ProbeStatus {
        let (base, outcome) = match Protocol::of(broker) {
            Some(Protocol::Binance) => (
                self.urls.binance.as_str(),
                self.binance(api_key, api_secret),
            ),
            Some(Protocol::Kraken) => (self.urls.kraken.as_str(), self.kraken(api_key, api_secret)),
            Some(Protocol::Alpaca) => (self.urls.alpaca.as_str(), self.alpaca(api_key, api_secret)),
            None => (
                "",
                Err(Failure::network("no automated check for this broker")),
            ),
        };
        match outcome {
            Ok(()) => ProbeStatus::Ok,
            Err(failure) => {
                warn!(
                    "broker credential check failed: broker={broker} host={} status={} cause={}",
                    host_of(base),
                    failure.status,
                    failure.cause
                );
                failure.status
            }
        }
    }

    fn signed(
        &self,
        broker: &str,
        method: HttpMethod,
        path: &str,
        api_key: &PlainSecret,
        api_secret: &PlainSecret,
    ) -> Result<(UnsignedRequest, SignedRequest), Failure> {
        let request = UnsignedRequest::parse(method, path, None, None)
            .map_err(|_| Failure::network("internal: invalid probe request"))?;
        let broker = BrokerId::parse(broker)
            .map_err(|_| Failure::network("internal: invalid broker name"))?;
        match self
            .signer
            .sign(&broker, &request, api_key, api_secret, Utc::now())
        {
            Ok(signed) => Ok((request, signed)),
            Err(SignError::InvalidSecret) => Err(Failure::unauthorized(
                "stored key or secret cannot be used with this broker (not sent)",
            )),
            Err(_) => Err(Failure::network("internal: probe request not signable")),
        }
    }

    fn binance(&self, api_key: &PlainSecret, api_secret: &PlainSecret) -> Result<(), Failure> {
        let (request, signed) = self.signed(
            "binance",
            HttpMethod::Get,
            "/api/v3/account",
            api_key,
            api_secret,
        )?;
        let (status, answer) = self.send(&self.urls.binance, &request, &signed)?;
        match status {
            200 => Ok(()),
            401 | 403 => Err(Failure::unauthorized(with_binance_code(status, &answer))),
            400 => {
                let code = binance_code(&answer);
                let cause = with_binance_code(status, &answer);
                match code {
                    Some(-2014 | -2015 | -1022) => Err(Failure::unauthorized(cause)),
                    _ => Err(Failure::network(cause)),
                }
            }
            _ => Err(Failure::network(with_binance_code(status, &answer))),
        }
    }

    fn kraken(&self, api_key: &PlainSecret, api_secret: &PlainSecret) -> Result<(), Failure> {
        let (request, signed) = self.signed(
            "kraken",
            HttpMethod::Post,
            "/0/private/Balance",
            api_key,
            api_secret,
        )?;
        let (status, answer) = self.send(&self.urls.kraken, &request, &signed)?;
        if status != 200 {
            return Err(Failure::network(format!("HTTP {status}")));
        }
        let Ok(answer) = serde_json::from_str::<serde_json::Value>(&answer) else {
            return Err(Failure::network("HTTP 200 with an answer that is not JSON"));
        };
        let errors: Vec<&str> = answer["error"]
            .as_array()
            .map(|e| e.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if errors.is_empty() {
            return if answer.get("result").is_some() {
                Ok(())
            } else {
                Err(Failure::network("HTTP 200 without result"))
            };
        }
        let cause = format!("Kraken error {}", kraken_error_names(&errors));
        let rejected = errors.iter().any(|e| {
            e.starts_with("EAPI:Invalid key")
                || e.starts_with("EAPI:Invalid signature")
                || e.starts_with("EGeneral:Permission denied")
        });
        if rejected {
            Err(Failure::unauthorized(cause))
        } else {
            Err(Failure::network(cause))
        }
    }

    /// Alpaca authenticates with the secret itself in a header: nothing to sign.
    fn alpaca(&self, api_key: &PlainSecret, api_secret: &PlainSecret) -> Result<(), Failure> {
        let headers = [api_key, api_secret];
        if headers.iter().any(|h| {
            let value = h.expose_secret();
            value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic())
        }) {
            return Err(Failure::unauthorized(
                "stored key or secret cannot be used with this broker (not sent)",
            ));
        }
        let url = format!("{}/v2/account", self.urls.alpaca.trim_end_matches('/'));
        let response = self
            .agent
            .get(&url)
            .header("APCA-API-KEY-ID", api_key.expose_secret())
            .header("APCA-API-SECRET-KEY", api_secret.expose_secret())
            .call();
        let status = response
            .map_err(|e| Failure::network(transport_cause(&e, "broker")))?
            .status()
            .as_u16();
        match status {
            200 => Ok(()),
            401 | 403 => Err(Failure::unauthorized(format!("HTTP {status}"))),
            _ => Err(Failure::network(format!("HTTP {status}"))),
        }
    }

    /// Sends a signed request; the status and the answer's text.
    fn send(
        &self,
        base: &str,
        request: &UnsignedRequest,
        signed: &SignedRequest,
    ) -> Result<(u16, String), Failure> {
        let mut url = format!("{}{}", base.trim_end_matches('/'), request.path());
        if !signed.query.is_empty() {
            url.push('?');
            url.push_str(&signed.query);
        }
        let builder = ureq::http::Request::builder()
            .method(request.method().as_str())
            .uri(url.as_str());
        let builder = signed
            .headers
            .iter()
            .fold(builder, |b, (name, value)| b.header(name, value));
        // ureq sends a POST without body as an empty chunked body; an empty body with
        // `Content-Length: 0` is what brokers expect.
        let result = if request.method() == HttpMethod::Get {
            builder.body(()).map(|r| self.agent.run(r))
        } else {
            builder
                .body(signed.body.as_str())
                .map(|r| self.agent.run(r))
        };
        let Ok(result) = result else {
            // The base URL cannot form a request: a configuration problem, not a key problem.
            return Err(Failure::network("invalid broker URL"));
        };
        let mut response = result.map_err(|e| Failure::network(transport_cause(&e, "broker")))?;
        let status = response.status().as_u16();
        let answer = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .unwrap_or_default();
        Ok((status, answer))
    }
}

fn binance_code(answer: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| v["code"].as_i64())
}

fn with_binance_code(status: u16, answer: &str) -> String {
    match binance_code(answer) {
        Some(code) => format!("HTTP {status}, Binance code {code}"),
        None => format!("HTTP {status}"),
    }
}

/// Kraken error names (`EAPI:Invalid key`): the part before any further `:` detail, limited to
/// the characters Kraken's names use, so that nothing an answer echoes reaches the log.
fn kraken_error_names(errors: &[&str]) -> String {
    errors
        .iter()
        .take(3)
        .map(|e| {
            let mut parts = e.splitn(3, ':');
            let name = match (parts.next(), parts.next()) {
                (Some(category), Some(message)) => format!("{category}:{message}"),
                (Some(category), None) => category.to_owned(),
                _ => String::new(),
            };
            name.chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | ':' | '_' | '-'))
                .take(60)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The host (and port) of a base URL, without scheme, user info or path.
fn host_of(base: &str) -> &str {
    let rest = base.split_once("://").map_or(base, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() {
        "-"
    } else {
        host
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn host_is_taken_without_scheme_user_info_or_path() {
        assert_eq!(host_of("https://api.binance.com"), "api.binance.com");
        assert_eq!(host_of("http://127.0.0.1:8080/base?x=1"), "127.0.0.1:8080");
        assert_eq!(
            host_of("https://user:pass@api.kraken.com/"),
            "api.kraken.com"
        );
        assert_eq!(host_of(""), "-");
    }

    #[test]
    fn kraken_error_names_drop_details() {
        assert_eq!(
            kraken_error_names(&["EAPI:Invalid key", "EGeneral:Invalid arguments:volume 12\n"]),
            "EAPI:Invalid key, EGeneral:Invalid arguments"
        );
    }

    #[test]
    fn supported_brokers() {
        for (name, supported) in [
            ("binance", true),
            ("kraken", true),
            ("alpaca", true),
            ("ibkr", false),
        ] {
            assert_eq!(
                HttpBrokerProbe::supports(&BrokerId::parse(name).unwrap()),
                supported
            );
        }
    }
}

/// The connection test as the domain's `BrokerProbe` port: each check runs on the runtime's
/// blocking threads (the HTTP client blocks), never on a thread that serves requests.
#[derive(Debug, Clone)]
pub struct BrokerProbeAdapter(std::sync::Arc<HttpBrokerProbe>);

impl BrokerProbeAdapter {
    /// Wraps `probe`.
    pub fn new(probe: HttpBrokerProbe) -> Self {
        Self(std::sync::Arc::new(probe))
    }
}

#[async_trait::async_trait]
impl user_service_domain::ports::BrokerProbe for BrokerProbeAdapter {
    async fn probe(
        &self,
        broker: &BrokerId,
        api_key: &PlainSecret,
        api_secret: &PlainSecret,
    ) -> ProbeStatus {
        let probe = std::sync::Arc::clone(&self.0);
        let (broker, api_key, api_secret) = (broker.clone(), api_key.clone(), api_secret.clone());
        tokio::task::spawn_blocking(move || probe.check(&broker, &api_key, &api_secret))
            .await
            .unwrap_or(ProbeStatus::NetworkError)
    }
}
