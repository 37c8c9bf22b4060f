//! A signed request, ready to send to the broker.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::request::Method;

/// Exactly what to send to the broker: the method and path of the request, and the headers,
/// query and body user-service answered (API key and signature included).
///
/// The headers hold the trader's API key and the signature, and a Binance query or body holds
/// the signature: `Debug` shows header names and sizes only, and [`ReadyRequest::url`] must not
/// be logged.
#[derive(Clone)]
pub struct ReadyRequest {
    method: Method,
    path: String,
    query: String,
    headers: Vec<(String, SecretString)>,
    body: String,
}

impl fmt::Debug for ReadyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ReadyRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &names)
            .field("query_bytes", &self.query.len())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl ReadyRequest {
    pub(crate) fn new(
        method: Method,
        path: String,
        query: String,
        headers: Vec<(String, SecretString)>,
        body: String,
    ) -> Self {
        Self {
            method,
            path,
            query,
            headers,
            body,
        }
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full URL for the broker at `broker_base_url` (`https://api.binance.com`): base, path
    /// and the signed query string. Holds the signature of a Binance `GET`: do not log it.
    pub fn url(&self, broker_base_url: &str) -> String {
        let mut url = format!("{}{}", broker_base_url.trim_end_matches('/'), self.path);
        if !self.query.is_empty() {
            url.push('?');
            url.push_str(&self.query);
        }
        url
    }

    /// Header names, in the order to send them.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers.iter().map(|(name, _)| name.as_str())
    }

    /// The headers with their values (API key, signature): for sending with another HTTP client.
    pub fn expose_headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.expose_secret()))
    }

    /// The form-encoded body (empty when none).
    pub fn body(&self) -> &str {
        &self.body
    }

    /// Sends the request to the broker at `broker_base_url` with `agent` and returns the
    /// broker's answer. Configure the agent with `http_status_as_error(false)` to read the
    /// broker's error bodies.
    pub fn send(
        &self,
        agent: &ureq::Agent,
        broker_base_url: &str,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let url = self.url(broker_base_url);
        let builder = ureq::http::Request::builder()
            .method(self.method.as_str())
            .uri(url.as_str());
        let builder = self
            .expose_headers()
            .fold(builder, |b, (name, value)| b.header(name, value));
        // Without a body ureq would send a POST as an empty chunked body; brokers expect
        // `Content-Length: 0`.
        if self.method == Method::Get {
            agent.run(builder.body(())?)
        } else {
            agent.run(builder.body(self.body.as_str())?)
        }
    }
}
