//! The broker request to have signed.

use std::fmt;

use crate::error::ClientError;

/// HTTP methods of broker requests: the user-service's own [`HttpMethod`](user_service_domain::HttpMethod).
pub use user_service_domain::HttpMethod as Method;

/// A broker request before signing: method, path, query parameters and form body parameters,
/// in the order given. Names and values are form-urlencoded when the request is sent for
/// signing, so pass them unencoded.
///
/// ```
/// use user_service_client::BrokerRequest;
/// let order = BrokerRequest::post("/api/v3/order")
///     .query("symbol", "BTCUSDT")
///     .form("side", "BUY")
///     .form("note", "a b&c");
/// assert_eq!(order.encoded_query().as_deref(), Some("symbol=BTCUSDT"));
/// assert_eq!(order.encoded_body().as_deref(), Some("side=BUY&note=a+b%26c"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerRequest {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
}

impl BrokerRequest {
    /// A request with this method and path (`/api/v3/order`), without parameters.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            form: Vec::new(),
        }
    }

    /// A `GET` request.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::Get, path)
    }

    /// A `POST` request.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::Post, path)
    }

    /// A `PUT` request.
    pub fn put(path: impl Into<String>) -> Self {
        Self::new(Method::Put, path)
    }

    /// A `DELETE` request.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::Delete, path)
    }

    /// Adds a query string parameter.
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// Adds a form body parameter (`application/x-www-form-urlencoded`).
    pub fn form(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.form.push((name.into(), value.into()));
        self
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The encoded query string, when there are query parameters.
    pub fn encoded_query(&self) -> Option<String> {
        encode(&self.query)
    }

    /// The encoded form body, when there are form parameters.
    pub fn encoded_body(&self) -> Option<String> {
        encode(&self.form)
    }

    /// What can be checked before calling user-service (which checks everything again).
    pub(crate) fn check(&self) -> Result<(), ClientError> {
        if !self.path.starts_with('/') {
            return Err(ClientError::InvalidRequest("path must start with '/'"));
        }
        if !self
            .path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
        {
            return Err(ClientError::InvalidRequest(
                "path must be printable ASCII without '?' or '#': put parameters in query or form",
            ));
        }
        if self.method == Method::Get && !self.form.is_empty() {
            return Err(ClientError::InvalidRequest("a GET request has no body"));
        }
        Ok(())
    }
}

fn encode(pairs: &[(String, String)]) -> Option<String> {
    if pairs.is_empty() {
        return None;
    }
    Some(
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish(),
    )
}

/// Parameters are the trader's orders, not secrets, but they stay out of logs all the same:
/// `Debug` shows parameter names only.
impl fmt::Debug for BrokerRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |pairs: &[(String, String)]| -> Vec<String> {
            pairs.iter().map(|(name, _)| name.clone()).collect()
        };
        f.debug_struct("BrokerRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &names(&self.query))
            .field("form", &names(&self.form))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_form_encoded_in_order() {
        let request = BrokerRequest::new(Method::Delete, "/api/v3/order")
            .query("symbol", "BTC/USDT")
            .query("origClientOrderId", "é 1")
            .form("list", "[\"a\",\"b\"]");
        assert_eq!(
            request.encoded_query().as_deref(),
            Some("symbol=BTC%2FUSDT&origClientOrderId=%C3%A9+1")
        );
        assert_eq!(
            request.encoded_body().as_deref(),
            Some("list=%5B%22a%22%2C%22b%22%5D")
        );
        assert_eq!(BrokerRequest::get("/x").encoded_query(), None);
    }

    #[test]
    fn obvious_mistakes_are_caught_before_calling() {
        assert!(BrokerRequest::get("api/v3/account").check().is_err());
        assert!(BrokerRequest::get("/api/v3/account?x=1").check().is_err());
        assert!(BrokerRequest::get("/api v3").check().is_err());
        assert!(BrokerRequest::get("/api/v3/account")
            .form("a", "1")
            .check()
            .is_err());
        assert!(BrokerRequest::put("/api/v3/order")
            .form("a", "1")
            .check()
            .is_ok());
    }

    #[test]
    fn debug_shows_names_not_values() {
        let shown = format!(
            "{:?}",
            BrokerRequest::post("/api/v3/order").form("quantity", "123.456")
        );
        assert!(
            shown.contains("quantity") && !shown.contains("123.456"),
            "{shown}"
        );
    }
}
