//! Signing broker requests: [`BrokerProtocols`] implements the domain's [`RequestSigner`] for
//! Binance (HMAC-SHA256) and Kraken (HMAC-SHA512), behind a per-broker allow-list of requests
//! ([`allowed_requests`]).

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::zeroize::Zeroizing;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256, Sha512};
use user_service_domain::{
    BrokerId, HttpMethod, PlainSecret, RequestSigner, SignError, SignedRequest, UnsignedRequest,
};

use crate::params;

/// `recvWindow` added to Binance requests that do not set one, in milliseconds (Binance's own
/// default, stated explicitly so that the broker's default may change without changing ours).
pub const BINANCE_RECV_WINDOW_MS: u32 = 5000;

const FORM: &str = "application/x-www-form-urlencoded";

/// The broker protocols this crate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Binance,
    Kraken,
    Alpaca,
}

impl Protocol {
    pub(crate) fn of(broker: &BrokerId) -> Option<Self> {
        match broker.as_str() {
            "binance" => Some(Self::Binance),
            "kraken" => Some(Self::Kraken),
            "alpaca" => Some(Self::Alpaca),
            _ => None,
        }
    }
}

use HttpMethod::{Delete, Get, Post};

/// Binance spot calls a trading platform needs: account and balances, orders (place, test,
/// query, cancel), open and past orders, trades. Nothing under `/sapi` (withdrawals, transfers,
/// sub-accounts, API-key management) is listed.
const BINANCE_ALLOWED: &[(HttpMethod, &str)] = &[
    (Get, "/api/v3/account"),
    (Post, "/api/v3/order"),
    (Post, "/api/v3/order/test"),
    (Get, "/api/v3/order"),
    (Delete, "/api/v3/order"),
    (Get, "/api/v3/openOrders"),
    (Delete, "/api/v3/openOrders"),
    (Get, "/api/v3/allOrders"),
    (Get, "/api/v3/myTrades"),
];

/// Kraken spot private calls a trading platform needs (all `POST`): balances, orders (place,
/// cancel, query), open and closed orders, trades. Not `Withdraw`, `WalletTransfer`,
/// `DepositAddresses`, sub-account, API-key or WebSocket-token calls.
const KRAKEN_ALLOWED: &[(HttpMethod, &str)] = &[
    (Post, "/0/private/Balance"),
    (Post, "/0/private/BalanceEx"),
    (Post, "/0/private/TradeBalance"),
    (Post, "/0/private/AddOrder"),
    (Post, "/0/private/CancelOrder"),
    (Post, "/0/private/CancelAll"),
    (Post, "/0/private/OpenOrders"),
    (Post, "/0/private/ClosedOrders"),
    (Post, "/0/private/QueryOrders"),
    (Post, "/0/private/TradesHistory"),
    (Post, "/0/private/QueryTrades"),
];

/// The (method, path) pairs the signing policy allows for `broker`; empty for a broker that
/// cannot be signed. Paths are compared exactly (case, trailing slash, escapes).
pub fn allowed_requests(broker: &BrokerId) -> &'static [(HttpMethod, &'static str)] {
    match Protocol::of(broker) {
        Some(Protocol::Binance) => BINANCE_ALLOWED,
        Some(Protocol::Kraken) => KRAKEN_ALLOWED,
        Some(Protocol::Alpaca) | None => &[],
    }
}

/// Signs Binance and Kraken requests; Alpaca and every other broker are
/// [`SignError::Unsupported`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BrokerProtocols;

impl BrokerProtocols {
    /// The signer.
    pub fn new() -> Self {
        Self
    }
}

impl RequestSigner for BrokerProtocols {
    fn sign(
        &self,
        broker: &BrokerId,
        request: &UnsignedRequest,
        api_key: &PlainSecret,
        api_secret: &PlainSecret,
        now: DateTime<Utc>,
    ) -> Result<SignedRequest, SignError> {
        let protocol = match Protocol::of(broker) {
            Some(protocol @ (Protocol::Binance | Protocol::Kraken)) => protocol,
            Some(Protocol::Alpaca) | None => return Err(SignError::Unsupported),
        };
        let allowed = allowed_requests(broker)
            .iter()
            .any(|&(method, path)| method == request.method() && path == request.path());
        if !allowed {
            return Err(SignError::PathNotAllowed);
        }
        let key = header_safe(api_key)?;
        match protocol {
            Protocol::Binance => Ok(sign_binance(request, key, api_secret, now)),
            Protocol::Kraken => sign_kraken(request, key, api_secret, now),
            Protocol::Alpaca => Err(SignError::Unsupported),
        }
    }

    fn can_sign(&self, broker: &BrokerId) -> bool {
        matches!(
            Protocol::of(broker),
            Some(Protocol::Binance | Protocol::Kraken)
        )
    }
}

/// The API key travels in a header: refuse one that no header can carry rather than let the
/// HTTP client fail later (or, worse, split a header line).
fn header_safe(api_key: &PlainSecret) -> Result<&str, SignError> {
    let key = api_key.expose_secret();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SignError::InvalidSecret);
    }
    Ok(key)
}

/// Binance "SIGNED" endpoints: `signature` = hex HMAC-SHA256(secret, totalParams), totalParams
/// being the query string concatenated, without separator, with the body.
///
/// `recvWindow` and `timestamp` are added when absent and `signature` is appended last, all to
/// the body when there is one (Binance's documented examples 1 and 3), to the query otherwise
/// (example 2).
fn sign_binance(
    request: &UnsignedRequest,
    key: &str,
    secret: &PlainSecret,
    now: DateTime<Utc>,
) -> SignedRequest {
    let mut query = request.query().unwrap_or_default().to_owned();
    let mut body = request.body().unwrap_or_default().to_owned();
    let present =
        |name: &str| params::value(&query, name).is_some() || params::value(&body, name).is_some();
    let mut added = Vec::new();
    if !present("recvWindow") {
        added.push(format!("recvWindow={BINANCE_RECV_WINDOW_MS}"));
    }
    if !present("timestamp") {
        added.push(format!("timestamp={}", now.timestamp_millis()));
    }
    let into_body = !body.is_empty();
    let target = if into_body { &mut body } else { &mut query };
    for pair in &added {
        params::append(target, pair);
    }
    let signature = binance_signature(secret.expose_secret().as_bytes(), &query, &body);
    let target = if into_body { &mut body } else { &mut query };
    params::append(target, &format!("signature={signature}"));

    let mut headers = vec![("X-MBX-APIKEY".to_owned(), key.to_owned())];
    if into_body {
        headers.push(("Content-Type".to_owned(), FORM.to_owned()));
    }
    SignedRequest {
        headers,
        query,
        body,
    }
}

/// Hex HMAC-SHA256 of `query ‖ body` under `secret`.
pub(crate) fn binance_signature(secret: &[u8], query: &str, body: &str) -> String {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(query.as_bytes());
    mac.update(body.as_bytes());
    params::hex(&mac.finalize().into_bytes())
}

/// Kraken private endpoints: `API-Sign` = base64(HMAC-SHA512(base64-decoded secret, path ‖
/// SHA-256(nonce ‖ body))). Parameters travel in the body only, so a query is refused rather
/// than sent unsigned. `nonce` is put first in the body when absent, as in Kraken's example.
fn sign_kraken(
    request: &UnsignedRequest,
    key: &str,
    secret: &PlainSecret,
    now: DateTime<Utc>,
) -> Result<SignedRequest, SignError> {
    if request.query().is_some() {
        return Err(SignError::InvalidRequest(
            "Kraken private calls carry their parameters in the body, not the query".to_owned(),
        ));
    }
    let secret = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(secret.expose_secret().trim())
            .map_err(|_| SignError::InvalidSecret)?,
    );
    if secret.is_empty() {
        return Err(SignError::InvalidSecret);
    }
    let given = request.body().unwrap_or_default();
    let (nonce, body) = match params::value(given, "nonce") {
        Some(nonce) => {
            if nonce.is_empty() || nonce.len() > 20 || !nonce.bytes().all(|b| b.is_ascii_digit()) {
                return Err(SignError::InvalidRequest(
                    "nonce must be an unsigned integer".to_owned(),
                ));
            }
            (nonce.to_owned(), given.to_owned())
        }
        None => {
            let nonce = next_kraken_nonce(now).to_string();
            let mut body = format!("nonce={nonce}");
            params::append(&mut body, given);
            (nonce, body)
        }
    };
    let signature = kraken_signature(&secret, request.path(), &nonce, &body);
    Ok(SignedRequest {
        headers: vec![
            ("API-Key".to_owned(), key.to_owned()),
            ("API-Sign".to_owned(), signature),
            ("Content-Type".to_owned(), FORM.to_owned()),
        ],
        query: String::new(),
        body,
    })
}

/// Base64 HMAC-SHA512 of `path ‖ SHA-256(nonce ‖ body)` under the decoded `secret`.
pub(crate) fn kraken_signature(secret: &[u8], path: &str, nonce: &str, body: &str) -> String {
    let digest = Sha256::new()
        .chain_update(nonce.as_bytes())
        .chain_update(body.as_bytes())
        .finalize();
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(path.as_bytes());
    mac.update(&digest);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Last Kraken nonce handed out by this process.
static LAST_KRAKEN_NONCE: AtomicU64 = AtomicU64::new(0);

/// Kraken wants a nonce that increases for every call with the same key, and the key is often
/// shared with the trader's own tools, which (like Kraken's own examples and our earlier probe)
/// use milliseconds since the epoch. Milliseconds keep us interleavable with them, where
/// microseconds would push the key's nonce out of their reach for good. The guard raises a nonce
/// past the previous one of this process, so two calls in the same millisecond, or a clock
/// stepping back, still get increasing nonces (a burst runs ahead of the clock by one per call,
/// and the clock catches up). Several processes signing for the same key rely on their clocks
/// and on the key's nonce window, which Kraken lets the user widen.
fn next_kraken_nonce(now: DateTime<Utc>) -> u64 {
    let candidate = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    let mut last = LAST_KRAKEN_NONCE.load(Ordering::Relaxed);
    loop {
        let next = candidate.max(last.saturating_add(1));
        match LAST_KRAKEN_NONCE.compare_exchange_weak(
            last,
            next,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return next,
            Err(actual) => last = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use chrono::TimeZone;

    // Binance's published HMAC example keys and parameters ("SIGNED Endpoint Examples for
    // POST /api/v3/order", https://developers.binance.com/docs/binance-spot-api-docs/rest-api/request-security
    // and rest-api.md of github.com/binance/binance-spot-api-docs; the three query/body/mixed
    // examples are in that file up to its 2025-12-17 revision, the ASCII and non-ASCII ones
    // after it). Checked with `openssl dgst -sha256 -hmac` and Python's hmac module.
    const BINANCE_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
    const BINANCE_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
    const LTCBTC_ALL: &str = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
    const LTCBTC_SIGNATURE: &str =
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";

    // Kraken's published example ("Spot REST Authentication",
    // https://docs.kraken.com/api/docs/guides/spot-rest-auth): a limit order to buy 1.25 XBTUSD
    // at 37500. Checked with Python's hmac/hashlib/base64.
    const KRAKEN_SECRET: &str =
        "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==";
    const KRAKEN_BODY: &str =
        "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
    const KRAKEN_SIGNATURE: &str =
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==";

    fn broker(name: &str) -> BrokerId {
        BrokerId::parse(name).unwrap()
    }

    /// `request` signed for Binance with the published example's key, at `now`.
    fn binance_at(request: &UnsignedRequest, now: DateTime<Utc>) -> SignedRequest {
        BrokerProtocols::new()
            .sign(
                &broker("binance"),
                request,
                &PlainSecret::new(BINANCE_KEY),
                &PlainSecret::new(BINANCE_SECRET),
                now,
            )
            .unwrap()
    }

    /// A request signed for Binance with the published example's key, now.
    fn binance(
        method: HttpMethod,
        path: &str,
        query: Option<&str>,
        body: Option<&str>,
    ) -> SignedRequest {
        binance_at(
            &UnsignedRequest::parse(method, path, query, body).unwrap(),
            Utc::now(),
        )
    }

    /// A `POST` of `body` to `path` signed for Kraken with the published example's secret, now.
    fn kraken(path: &str, body: Option<&str>) -> SignedRequest {
        BrokerProtocols::new()
            .sign(
                &broker("kraken"),
                &UnsignedRequest::parse(Post, path, None, body).unwrap(),
                &PlainSecret::new("kraken-key"),
                &PlainSecret::new(KRAKEN_SECRET),
                Utc::now(),
            )
            .unwrap()
    }

    /// The published example's parameters followed by their signature.
    fn ltcbtc_signed() -> String {
        format!("{LTCBTC_ALL}&signature={LTCBTC_SIGNATURE}")
    }

    fn header<'a>(signed: &'a SignedRequest, name: &str) -> Option<&'a str> {
        signed
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn binance_example_1_request_body() {
        let signed = binance(Post, "/api/v3/order", None, Some(LTCBTC_ALL));
        assert_eq!(signed.query, "");
        assert_eq!(signed.body, ltcbtc_signed());
        assert_eq!(header(&signed, "X-MBX-APIKEY"), Some(BINANCE_KEY));
        assert_eq!(header(&signed, "Content-Type"), Some(FORM));
    }

    #[test]
    fn binance_example_2_query_string() {
        let signed = binance(Post, "/api/v3/order", Some(LTCBTC_ALL), None);
        assert_eq!(signed.query, ltcbtc_signed());
        assert_eq!(signed.body, "");
        assert_eq!(header(&signed, "Content-Type"), None);
    }

    #[test]
    fn binance_example_3_mixed_query_and_body() {
        let signed = binance(
            Post,
            "/api/v3/order",
            Some("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"),
            Some("quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"),
        );
        assert_eq!(
            signed.query,
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
        );
        assert_eq!(
            signed.body,
            "quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559\
             &signature=0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
        );
    }

    #[test]
    fn binance_non_ascii_example_is_signed_percent_encoded() {
        let query = "symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        let signed = binance(Post, "/api/v3/order", Some(query), None);
        assert_eq!(
            signed.query,
            format!(
                "{query}&signature=e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
            )
        );
    }

    #[test]
    fn binance_timestamp_and_recv_window_are_added_when_absent() {
        let now = Utc.timestamp_millis_opt(1_499_827_319_559).unwrap();
        let signed = binance_at(
            &UnsignedRequest::parse(
                Post,
                "/api/v3/order",
                None,
                Some("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"),
            )
            .unwrap(),
            now,
        );
        // Same parameters, in the documented order, hence the documented signature.
        assert_eq!(signed.body, ltcbtc_signed());

        let account = binance_at(
            &UnsignedRequest::parse(Get, "/api/v3/account", None, None).unwrap(),
            now,
        );
        let (unsigned, signature) = account.query.rsplit_once("&signature=").unwrap();
        assert_eq!(unsigned, "recvWindow=5000&timestamp=1499827319559");
        assert_eq!(
            signature,
            binance_signature(BINANCE_SECRET.as_bytes(), unsigned, "")
        );
    }

    #[test]
    fn binance_keeps_a_caller_recv_window() {
        let signed = binance(Get, "/api/v3/openOrders", Some("recvWindow=2000"), None);
        assert!(signed.query.starts_with("recvWindow=2000&timestamp="));
        assert_eq!(signed.query.matches("recvWindow").count(), 1);
    }

    #[test]
    fn kraken_published_example() {
        let signed = kraken("/0/private/AddOrder", Some(KRAKEN_BODY));
        assert_eq!(signed.body, KRAKEN_BODY);
        assert_eq!(signed.query, "");
        assert_eq!(header(&signed, "API-Key"), Some("kraken-key"));
        assert_eq!(header(&signed, "API-Sign"), Some(KRAKEN_SIGNATURE));
        assert_eq!(header(&signed, "Content-Type"), Some(FORM));
    }

    #[test]
    fn kraken_nonce_is_added_first_and_signed() {
        let given = "ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25";
        let signed = kraken("/0/private/AddOrder", Some(given));
        let nonce = params::value(&signed.body, "nonce").unwrap();
        assert_eq!(signed.body, format!("nonce={nonce}&{given}"));
        let secret = base64::engine::general_purpose::STANDARD
            .decode(KRAKEN_SECRET)
            .unwrap();
        assert_eq!(
            header(&signed, "API-Sign").unwrap(),
            kraken_signature(&secret, "/0/private/AddOrder", nonce, &signed.body)
        );
        let balance = kraken("/0/private/Balance", None);
        assert!(balance.body.starts_with("nonce=") && !balance.body.contains('&'));
    }

    #[test]
    fn kraken_nonces_increase_even_within_one_millisecond() {
        let frozen = Utc.timestamp_millis_opt(1_700_000_000_000).unwrap();
        let nonces: Vec<u64> = (0..1000).map(|_| next_kraken_nonce(frozen)).collect();
        assert!(nonces.windows(2).all(|w| w[0] < w[1]), "{nonces:?}");
        // A clock stepping back does not make them decrease either.
        let earlier = Utc.timestamp_millis_opt(1_600_000_000_000).unwrap();
        assert!(next_kraken_nonce(earlier) > nonces[999]);
        // Across threads, no nonce is handed out twice.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..500)
                        .map(|_| next_kraken_nonce(frozen))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 2000);
    }

    #[test]
    fn kraken_nonce_follows_the_clock_in_milliseconds() {
        let later = Utc::now() + chrono::Duration::days(365);
        assert_eq!(
            next_kraken_nonce(later),
            u64::try_from(later.timestamp_millis()).unwrap()
        );
    }

    #[test]
    fn kraken_refuses_a_query_a_bad_nonce_and_a_non_base64_secret() {
        let signer = BrokerProtocols::new();
        let kraken = broker("kraken");
        let key = PlainSecret::new("k");
        let secret = PlainSecret::new(KRAKEN_SECRET);
        let now = Utc::now();
        let with_query =
            UnsignedRequest::parse(Post, "/0/private/Balance", Some("a=1"), None).unwrap();
        assert!(matches!(
            signer.sign(&kraken, &with_query, &key, &secret, now),
            Err(SignError::InvalidRequest(_))
        ));
        let bad_nonce =
            UnsignedRequest::parse(Post, "/0/private/Balance", None, Some("nonce=12a")).unwrap();
        assert!(matches!(
            signer.sign(&kraken, &bad_nonce, &key, &secret, now),
            Err(SignError::InvalidRequest(_))
        ));
        let balance = UnsignedRequest::parse(Post, "/0/private/Balance", None, None).unwrap();
        for bad in ["not base64!", "", "   "] {
            assert_eq!(
                signer.sign(&kraken, &balance, &key, &PlainSecret::new(bad), now),
                Err(SignError::InvalidSecret)
            );
        }
    }

    #[test]
    fn alpaca_and_unknown_brokers_are_unsupported() {
        let signer = BrokerProtocols::new();
        let any = UnsignedRequest::parse(Get, "/v2/account", None, None).unwrap();
        for name in ["alpaca", "ibkr", "coinbase"] {
            assert!(!signer.can_sign(&broker(name)));
            assert_eq!(
                signer.sign(
                    &broker(name),
                    &any,
                    &PlainSecret::new("k"),
                    &PlainSecret::new("s"),
                    Utc::now()
                ),
                Err(SignError::Unsupported)
            );
        }
        assert!(signer.can_sign(&broker("binance")) && signer.can_sign(&broker("kraken")));
    }

    #[test]
    fn policy_refuses_anything_that_moves_funds_or_manages_keys() {
        let signer = BrokerProtocols::new();
        let sign = |name: &str, method: HttpMethod, path: &str| {
            signer.sign(
                &broker(name),
                &UnsignedRequest::parse(method, path, None, None).unwrap(),
                &PlainSecret::new("k"),
                &PlainSecret::new(KRAKEN_SECRET),
                Utc::now(),
            )
        };
        let refused = [
            ("binance", Post, "/sapi/v1/capital/withdraw/apply"),
            ("binance", Post, "/sapi/v1/asset/transfer"),
            ("binance", Post, "/sapi/v1/sub-account/transfer/subToMaster"),
            ("binance", Get, "/sapi/v1/account/apiRestrictions"),
            ("binance", Post, "/api/v3/order/"),
            ("binance", Post, "/api/v3/ORDER"),
            ("binance", Post, "/api/v3/account"),
            (
                "binance",
                Get,
                "/api/v3/order/../../sapi/v1/capital/withdraw/apply",
            ),
            ("kraken", Post, "/0/private/Withdraw"),
            ("kraken", Post, "/0/private/WalletTransfer"),
            ("kraken", Post, "/0/private/DepositAddresses"),
            ("kraken", Post, "/0/private/CreateSubaccount"),
            ("kraken", Post, "/0/private/AccountTransfer"),
            ("kraken", Post, "/0/private/GetWebSocketsToken"),
            ("kraken", Get, "/0/private/Balance"),
        ];
        for (name, method, path) in refused {
            let result = sign(name, method, path);
            assert_eq!(
                result,
                Err(SignError::PathNotAllowed),
                "{name} {method} {path}"
            );
        }
        for (name, list) in [("binance", BINANCE_ALLOWED), ("kraken", KRAKEN_ALLOWED)] {
            assert_eq!(allowed_requests(&broker(name)), list);
            for &(method, path) in list {
                let result = sign(name, method, path);
                assert!(result.is_ok(), "{name} {method} {path}: {result:?}");
            }
        }
        assert!(allowed_requests(&broker("alpaca")).is_empty());
    }

    #[test]
    fn an_api_key_no_header_can_carry_is_refused() {
        let signer = BrokerProtocols::new();
        let account = UnsignedRequest::parse(Get, "/api/v3/account", None, None).unwrap();
        for key in ["", "abc def", "abc\r\nX-Evil: 1", "clé"] {
            assert_eq!(
                signer.sign(
                    &broker("binance"),
                    &account,
                    &PlainSecret::new(key),
                    &PlainSecret::new(BINANCE_SECRET),
                    Utc::now()
                ),
                Err(SignError::InvalidSecret),
                "{key:?}"
            );
        }
    }

    #[test]
    fn debug_of_a_signed_request_shows_no_key_or_signature() {
        let signed = binance(Post, "/api/v3/order", Some(LTCBTC_ALL), None);
        let shown = format!("{signed:?} {:?}", BrokerProtocols::new());
        assert!(!shown.contains(BINANCE_KEY), "{shown}");
        assert!(!shown.contains(LTCBTC_SIGNATURE), "{shown}");
    }
}
