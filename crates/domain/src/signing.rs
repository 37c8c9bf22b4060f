//! Signing a broker request with a stored secret that never leaves the service.
//!
//! A platform service (the order router) describes the request it is about to send to a broker
//! as an [`UnsignedRequest`]; a [`RequestSigner`] adapter returns the [`SignedRequest`] to send
//! instead: the headers (API key, signature) and the final query string and body. The secret is
//! used to compute the signature and is never part of the answer.
//!
//! # Limits of an unsigned request
//!
//! | part | rule |
//! |---|---|
//! | method | `GET`, `POST`, `PUT` or `DELETE` (any case); a `GET` has no body |
//! | path | starts with `/`; printable ASCII without spaces, `?` or `#`; at most [`SIGN_PATH_MAX_BYTES`] bytes |
//! | query, body | each at most [`SIGN_PARAMS_MAX_BYTES`] bytes of `application/x-www-form-urlencoded` text: letters, digits, `-._~*+=&` and `%` followed by two hex digits (anything else, spaces and non-ASCII included, must already be percent-encoded) |
//! | `signature` | no parameter of that name (in any case, encoded or not): the signer adds it |
//!
//! An empty query or body is the same as none. Error messages name the part and the rule, never
//! the value.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::broker::BrokerId;
use crate::error::AccessDenied;
pub use crate::error::SignError;
use crate::principal::{Principal, ServiceName};
use crate::secret::PlainSecret;

/// Longest path of a request to sign, in bytes.
pub const SIGN_PATH_MAX_BYTES: usize = 512;
/// Longest query string, and longest body, of a request to sign, in bytes.
pub const SIGN_PARAMS_MAX_BYTES: usize = 8 * 1024;

/// HTTP methods a broker request may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
}

impl HttpMethod {
    /// Parses a method name, in any case.
    pub fn parse(raw: &str) -> Result<Self, SignError> {
        match raw.to_ascii_uppercase().as_str() {
            "GET" => Ok(Self::Get),
            "POST" => Ok(Self::Post),
            "PUT" => Ok(Self::Put),
            "DELETE" => Ok(Self::Delete),
            _ => Err(SignError::InvalidRequest(
                "method must be GET, POST, PUT or DELETE".to_owned(),
            )),
        }
    }

    /// The upper-case method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A broker request as the calling service will send it, before signing. Only
/// [`UnsignedRequest::parse`] builds one, so every instance respects the limits of the module.
#[derive(Clone, PartialEq, Eq)]
pub struct UnsignedRequest {
    method: HttpMethod,
    path: String,
    query: Option<String>,
    body: Option<String>,
}

impl UnsignedRequest {
    /// Checks a request against the limits of the module.
    ///
    /// ```
    /// use user_service_domain::{HttpMethod, UnsignedRequest};
    /// let request = UnsignedRequest::parse(
    ///     HttpMethod::Post,
    ///     "/api/v3/order",
    ///     Some("symbol=LTCBTC&side=BUY"),
    ///     Some("quantity=1&price=0.1"),
    /// )
    /// .unwrap();
    /// assert_eq!(request.query(), Some("symbol=LTCBTC&side=BUY"));
    /// assert!(UnsignedRequest::parse(HttpMethod::Get, "/a b", None, None).is_err());
    /// ```
    pub fn parse(
        method: HttpMethod,
        path: &str,
        query: Option<&str>,
        body: Option<&str>,
    ) -> Result<Self, SignError> {
        check_path(path)?;
        let query = query.filter(|q| !q.is_empty());
        let body = body.filter(|b| !b.is_empty());
        if let Some(query) = query {
            check_params("query", query)?;
        }
        if let Some(body) = body {
            if method == HttpMethod::Get {
                return Err(invalid("a GET request has no body"));
            }
            check_params("body", body)?;
        }
        Ok(Self {
            method,
            path: path.to_owned(),
            query: query.map(str::to_owned),
            body: body.map(str::to_owned),
        })
    }

    /// The method.
    pub fn method(&self) -> HttpMethod {
        self.method
    }

    /// The path, starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query string without `?`, when there is one.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The form-encoded body, when there is one.
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }
}

/// Order parameters are not secret, but they are the trader's business: `Debug` shows sizes only.
impl fmt::Debug for UnsignedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnsignedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query_bytes", &self.query.as_ref().map_or(0, String::len))
            .field("body_bytes", &self.body.as_ref().map_or(0, String::len))
            .finish()
    }
}

fn invalid(reason: &str) -> SignError {
    SignError::InvalidRequest(reason.to_owned())
}

fn check_path(path: &str) -> Result<(), SignError> {
    if !path.starts_with('/') {
        return Err(invalid("path must start with '/'"));
    }
    if path.len() > SIGN_PATH_MAX_BYTES {
        return Err(SignError::InvalidRequest(format!(
            "path must be at most {SIGN_PATH_MAX_BYTES} bytes"
        )));
    }
    if path.contains(['?', '#']) {
        return Err(invalid(
            "path must not contain '?' or '#': send the query separately",
        ));
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "path must be printable ASCII without spaces or control characters",
        ));
    }
    Ok(())
}

fn check_params(part: &'static str, text: &str) -> Result<(), SignError> {
    if text.len() > SIGN_PARAMS_MAX_BYTES {
        return Err(SignError::InvalidRequest(format!(
            "{part} must be at most {SIGN_PARAMS_MAX_BYTES} bytes"
        )));
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let escape_ok = bytes
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
                if !escape_ok {
                    return Err(SignError::InvalidRequest(format!(
                        "{part} holds a '%' not followed by two hex digits"
                    )));
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b"-._~*+=&".contains(&b) => i += 1,
            _ => {
                return Err(SignError::InvalidRequest(format!(
                    "{part} must be application/x-www-form-urlencoded: letters, digits, \
                     -._~*+=& and %XX escapes only"
                )))
            }
        }
    }
    let names_signature = text
        .split('&')
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .any(|name| decode_form(name).eq_ignore_ascii_case("signature"));
    if names_signature {
        return Err(SignError::InvalidRequest(format!(
            "{part} must not carry a 'signature' parameter: the service adds it"
        )));
    }
    Ok(())
}

/// Decodes `+` and `%XX` of a name already checked by [`check_params`]; undecodable bytes become
/// U+FFFD, which no compared name contains.
fn decode_form(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let value = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(value.unwrap_or(b'%'));
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What to send to the broker instead of the unsigned request.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// Headers to add, in order (API key, signature, content type).
    pub headers: Vec<(String, String)>,
    /// The final query string without `?` (empty when none).
    pub query: String,
    /// The final form-encoded body (empty when none).
    pub body: String,
}

/// Header values hold the API key and the signature, and the query or body may hold the
/// signature: `Debug` shows header names and sizes only.
impl fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("SignedRequest")
            .field("headers", &names)
            .field("query_bytes", &self.query.len())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// The platform services allowed to have requests signed (`SIGNING_SERVICES`); none by default,
/// which turns the signing route off.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct SigningServices(std::collections::BTreeSet<ServiceName>);

impl TryFrom<String> for SigningServices {
    type Error = String;

    fn try_from(list: String) -> Result<Self, String> {
        Self::parse(&list)
    }
}

impl SigningServices {
    /// Reads a comma-separated list of service names (blanks around names and empty items are
    /// ignored); the error names the first item that is not a service name.
    ///
    /// ```
    /// use user_service_domain::signing::SigningServices;
    /// let services = SigningServices::parse(" order-router, risk ").unwrap();
    /// assert_eq!(services.names().collect::<Vec<_>>(), ["order-router", "risk"]);
    /// assert!(SigningServices::parse("").unwrap().is_empty());
    /// assert!(SigningServices::parse("42").is_err());
    /// ```
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                ServiceName::parse(item).ok_or_else(|| {
                    format!(
                        "{item:?} is not a service name (an ASCII letter, then letters, digits, \
                         '.', '_' or '-', at most {} characters)",
                        crate::limits::SERVICE_NAME_MAX_CHARS
                    )
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether no service is listed (the route is off).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The listed names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(ServiceName::as_str)
    }

    /// The service `principal` names, when it is listed: users (traders and operators alike)
    /// and unlisted services are refused.
    pub fn authorize(&self, principal: &Principal) -> Result<ServiceName, AccessDenied> {
        match principal {
            Principal::User(_) => Err(AccessDenied::ServiceRequired),
            Principal::Service(name) if self.0.contains(name) => Ok(name.clone()),
            Principal::Service(_) => Err(AccessDenied::ServiceNotListed),
        }
    }
}

/// Signs broker requests with a user's stored credential.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait RequestSigner: Send + Sync {
    /// Signs `request` for `broker` with the given key and secret, at time `now` (Binance
    /// timestamps, Kraken nonces).
    fn sign(
        &self,
        broker: &BrokerId,
        request: &UnsignedRequest,
        api_key: &PlainSecret,
        api_secret: &PlainSecret,
        now: DateTime<Utc>,
    ) -> Result<SignedRequest, SignError>;

    /// Whether requests to `broker` can be signed at all.
    fn can_sign(&self, broker: &BrokerId) -> bool;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(
        method: HttpMethod,
        path: &str,
        query: Option<&str>,
        body: Option<&str>,
    ) -> Result<UnsignedRequest, SignError> {
        UnsignedRequest::parse(method, path, query, body)
    }

    fn reason(result: Result<UnsignedRequest, SignError>) -> String {
        match result {
            Err(SignError::InvalidRequest(reason)) => reason,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn method_is_parsed_in_any_case_and_unknown_ones_refused() {
        assert_eq!(HttpMethod::parse("post").unwrap(), HttpMethod::Post);
        assert_eq!(HttpMethod::parse("Delete").unwrap().as_str(), "DELETE");
        assert_eq!(HttpMethod::parse("GET").unwrap().to_string(), "GET");
        assert!(matches!(
            HttpMethod::parse("PATCH"),
            Err(SignError::InvalidRequest(_))
        ));
        assert!(HttpMethod::parse("").is_err());
    }

    #[test]
    fn binance_mixed_order_is_accepted_as_sent() {
        let request = parse(
            HttpMethod::Post,
            "/api/v3/order",
            Some("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"),
            Some("quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"),
        )
        .unwrap();
        assert_eq!(request.method(), HttpMethod::Post);
        assert_eq!(request.path(), "/api/v3/order");
        assert_eq!(
            request.query(),
            Some("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC")
        );
        assert_eq!(
            request.body(),
            Some("quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559")
        );
    }

    #[test]
    fn empty_query_and_body_are_none() {
        let request = parse(HttpMethod::Post, "/0/private/Balance", Some(""), Some("")).unwrap();
        assert_eq!(request.query(), None);
        assert_eq!(request.body(), None);
    }

    #[test]
    fn path_must_start_with_a_slash() {
        assert!(reason(parse(HttpMethod::Get, "api/v3/account", None, None)).contains("'/'"));
        assert!(reason(parse(HttpMethod::Get, "", None, None)).contains("'/'"));
    }

    #[test]
    fn path_refuses_query_fragment_whitespace_and_control_characters() {
        for path in [
            "/api/v3/account?x=1",
            "/api/v3/account#x",
            "/api/v3/ account",
            "/api/v3/account\n",
            "/api/v3/account\t",
            "/api/v3/\u{7f}",
            "/api/v3/cafés",
        ] {
            let reason = reason(parse(HttpMethod::Get, path, None, None));
            assert!(reason.starts_with("path"), "{path:?}: {reason}");
        }
    }

    #[test]
    fn path_of_512_bytes_is_accepted_and_513_refused() {
        let at_limit = format!("/{}", "a".repeat(SIGN_PATH_MAX_BYTES - 1));
        assert!(parse(HttpMethod::Get, &at_limit, None, None).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(
            reason(parse(HttpMethod::Get, &over, None, None)),
            "path must be at most 512 bytes"
        );
    }

    #[test]
    fn query_and_body_of_8_kib_are_accepted_and_one_more_byte_refused() {
        let at_limit = format!("a={}", "b".repeat(SIGN_PARAMS_MAX_BYTES - 2));
        let over = format!("{at_limit}b");
        assert!(parse(HttpMethod::Post, "/x", Some(&at_limit), Some(&at_limit)).is_ok());
        assert_eq!(
            reason(parse(HttpMethod::Post, "/x", Some(&over), None)),
            "query must be at most 8192 bytes"
        );
        assert_eq!(
            reason(parse(HttpMethod::Post, "/x", None, Some(&over))),
            "body must be at most 8192 bytes"
        );
    }

    #[test]
    fn query_and_body_must_be_form_urlencoded() {
        for text in [
            "symbol=LTC BTC",
            "a=b\r\nX-Injected: 1",
            "a=\u{0}",
            "symbol=１２３",
            "a=[\"x\"]",
            "a=b#c",
            "a=b?c",
            "a=%zz",
            "a=%4",
        ] {
            let query = reason(parse(HttpMethod::Post, "/x", Some(text), None));
            assert!(query.starts_with("query"), "{text:?}: {query}");
            let body = reason(parse(HttpMethod::Post, "/x", None, Some(text)));
            assert!(body.starts_with("body"), "{text:?}: {body}");
        }
        let encoded = "symbol=%EF%BC%91%EF%BC%92&note=a+b&x=-._~*";
        assert!(parse(HttpMethod::Post, "/x", Some(encoded), Some(encoded)).is_ok());
    }

    #[test]
    fn caller_cannot_supply_the_signature() {
        for text in [
            "signature=abc",
            "a=1&signature=abc",
            "a=1&Signature=abc",
            "a=1&%73ignature=abc",
            "signature",
        ] {
            assert!(
                reason(parse(HttpMethod::Post, "/x", Some(text), None)).contains("'signature'"),
                "{text}"
            );
            assert!(
                reason(parse(HttpMethod::Post, "/x", None, Some(text))).contains("'signature'"),
                "{text}"
            );
        }
        // A parameter whose *value* is "signature", or whose name merely contains it, is fine.
        assert!(parse(
            HttpMethod::Post,
            "/x",
            Some("note=signature&signatures=1"),
            None
        )
        .is_ok());
    }

    #[test]
    fn get_has_no_body() {
        assert_eq!(
            reason(parse(HttpMethod::Get, "/api/v3/account", None, Some("a=1"))),
            "a GET request has no body"
        );
        assert!(parse(HttpMethod::Delete, "/api/v3/order", None, Some("a=1")).is_ok());
    }

    #[test]
    fn errors_never_quote_values() {
        let secret_looking = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
        let attempts = [
            parse(HttpMethod::Get, &format!("/{secret_looking} "), None, None),
            parse(
                HttpMethod::Post,
                "/x",
                Some(&format!("k={secret_looking} ")),
                None,
            ),
            parse(
                HttpMethod::Post,
                "/x",
                None,
                Some(&format!("signature={secret_looking}")),
            ),
            parse(
                HttpMethod::Post,
                "/x",
                Some(&format!("k={}", secret_looking.repeat(200))),
                None,
            ),
        ];
        for attempt in attempts {
            let error = attempt.unwrap_err();
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains("NhqPtmdSJYdK"), "{shown}");
        }
    }

    #[test]
    fn debug_shows_neither_header_values_nor_parameters() {
        let signed = SignedRequest {
            headers: vec![("X-MBX-APIKEY".to_owned(), "vmPUZE6mv9SD5VNH".to_owned())],
            query: "symbol=LTCBTC&signature=c8db56825ae71d6d".to_owned(),
            body: "quantity=1&signature=0fd168b8ddb4876a".to_owned(),
        };
        let shown = format!("{signed:?}");
        assert!(shown.contains("X-MBX-APIKEY"), "{shown}");
        for value in [
            "vmPUZE6mv9SD5VNH",
            "c8db56825ae71d6d",
            "0fd168b8ddb4876a",
            "LTCBTC",
        ] {
            assert!(!shown.contains(value), "{shown}");
        }
        let unsigned = parse(HttpMethod::Post, "/x", Some("symbol=LTCBTC"), None).unwrap();
        assert!(!format!("{unsigned:?}").contains("LTCBTC"));
    }

    #[test]
    fn signer_port_has_a_mock() {
        let mut signer = MockRequestSigner::new();
        signer
            .expect_can_sign()
            .returning(|broker| broker.as_str() == "binance");
        signer
            .expect_sign()
            .returning(|_, _, _, _, _| Err(SignError::Unsupported));
        let alpaca = BrokerId::parse("alpaca").unwrap();
        assert!(!signer.can_sign(&alpaca));
        let request = parse(HttpMethod::Get, "/v2/account", None, None).unwrap();
        assert_eq!(
            signer.sign(
                &alpaca,
                &request,
                &PlainSecret::new("k"),
                &PlainSecret::new("s"),
                Utc::now()
            ),
            Err(SignError::Unsupported)
        );
    }
}
