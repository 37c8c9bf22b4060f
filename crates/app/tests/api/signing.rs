//! Trading with a stored key: `POST /users/{id}/broker-credentials/{broker}/sign` on a real
//! server, called through the workspace's client, and the signed requests sent to the loopback
//! Binance and Kraken stand-ins, which verify signatures as the brokers do. Then every refusal,
//! with its status and code, and the proof that no answer, log line or audit row holds a secret.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use secrecy::SecretString;
use serde_json::{json, Value};
use user_service_brokers::stand_in::{BinanceStandIn, KrakenStandIn, Outcome};
use user_service_client::{BrokerRequest, SigningClient};

use crate::support::{Backend, TestServer, JWT_SECRET};

const BINANCE_KEY: &str = "sign-e2e-binance-api-key-0001";
const BINANCE_SECRET: &str = "sign-e2e-binance-secret-value-9f3a";
const KRAKEN_KEY: &str = "sign-e2e-kraken-api-key-0002";
/// Kraken secrets are base64.
const KRAKEN_SECRET: &str = "c2lnbi1lMmUga3Jha2VuIHNlY3JldCBvZiBhIHRyYWRlcg==";
const ALPACA_KEY: &str = "sign-e2e-alpaca-key-0003";
const ALPACA_SECRET: &str = "sign-e2e-alpaca-secret-0004";
const SERVICE: &str = "order-router";
/// Capabilities granted or revoked from the command line are seen by the next request.
const FRESH_ENTITLEMENTS: (&str, Option<&str>) = ("ENTITLEMENTS_CACHE_TTL_SECS", Some("0"));

/// A token signed with the servers' secret whose `sub` is `sub`.
fn token(sub: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": sub, "exp": chrono::Utc::now().timestamp() + 3600}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn entry<'a>(list: &'a Value, broker: &str) -> &'a Value {
    list["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["broker"] == broker)
        .unwrap_or_else(|| panic!("no {broker} in {list}"))
}

/// `request` with the form parameters `pairs` added, in order.
fn with_form(request: BrokerRequest, pairs: &[(&str, &str)]) -> BrokerRequest {
    pairs.iter().fold(request, |request, (name, value)| {
        request.form(*name, *value)
    })
}

/// Has `request` signed with `user`'s `broker` key through the route, sends it to the broker at
/// `url`, and answers the broker's status and JSON body.
fn signed_and_sent(
    client: &SigningClient,
    user: i64,
    broker: &str,
    request: &BrokerRequest,
    url: &str,
) -> (u16, Value) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut sent = client
        .sign(user, broker, request)
        .unwrap()
        .send(&agent, url)
        .unwrap();
    let body = sent.body_mut().read_to_string().unwrap();
    (
        sent.status().as_u16(),
        serde_json::from_str(&body).unwrap_or(Value::Null),
    )
}

/// A trader with Binance, Kraken and Alpaca keys stored, trading allowed on all three, and
/// `can.route_orders`.
fn consenting_trader(server: &TestServer, email: &str) -> (i64, String) {
    let (id, trader) = server.user(email, false);
    let stored = server.put_credentials(
        &trader,
        json!([
            {"broker": "binance", "api_key": BINANCE_KEY, "api_secret": BINANCE_SECRET},
            {"broker": "kraken", "api_key": KRAKEN_KEY, "api_secret": KRAKEN_SECRET},
            {"broker": "alpaca", "api_key": ALPACA_KEY, "api_secret": ALPACA_SECRET},
        ]),
    );
    assert_eq!(stored.status, 200, "{}", stored.text);
    assert_eq!(entry(&stored.body, "binance")["trading_enabled"], false);
    let allowed = server.put_credentials(
        &trader,
        json!([
            {"broker": "binance", "trading_enabled": true},
            {"broker": "kraken", "trading_enabled": true},
            {"broker": "alpaca", "trading_enabled": true},
        ]),
    );
    assert_eq!(allowed.status, 200, "{}", allowed.text);
    assert_eq!(entry(&allowed.body, "kraken")["trading_enabled"], true);
    server.cli(&["grant", email, "can.route_orders"]);
    (id, trader)
}

fn signed_requests_are_accepted_by_the_brokers(backend: Backend) {
    let Some(server) = TestServer::start(
        backend,
        &[("SIGNING_SERVICES", Some(SERVICE)), FRESH_ENTITLEMENTS],
    ) else {
        return;
    };
    let (trader_id, _) = consenting_trader(&server, "signer@example.com");
    let binance = BinanceStandIn::start([(BINANCE_KEY, BINANCE_SECRET)]).unwrap();
    let kraken = KrakenStandIn::start([(KRAKEN_KEY, KRAKEN_SECRET)]).unwrap();
    let client = SigningClient::new(&server.base, SecretString::from(token(SERVICE)));

    // A Binance market sell with its parameters in the query and in the body.
    let order = BrokerRequest::post("/api/v3/order").query("symbol", "ETHUSDT");
    let order = with_form(
        order,
        &[("side", "SELL"), ("type", "MARKET"), ("quantity", "0.5")],
    );
    let (status, placed) = signed_and_sent(&client, trader_id, "binance", &order, &binance.url());
    assert_eq!(status, 200, "{placed}");
    assert_eq!(
        (&placed["symbol"], &placed["type"]),
        (&json!("ETHUSDT"), &json!("MARKET"))
    );
    // A signed GET.
    let account = BrokerRequest::get("/api/v3/account").query("omitZeroBalances", "true");
    let (status, _) = signed_and_sent(&client, trader_id, "binance", &account, &binance.url());
    assert_eq!(status, 200);

    // A Kraken order (the nonce is added to the body, the signature is a header).
    let sell = with_form(
        BrokerRequest::post("/0/private/AddOrder"),
        &[
            ("pair", "ETHEUR"),
            ("type", "sell"),
            ("ordertype", "market"),
            ("volume", "0.5"),
        ],
    );
    let (status, added) = signed_and_sent(&client, trader_id, "kraken", &sell, &kraken.url());
    assert_eq!((status, &added["error"]), (200, &json!([])), "{added}");

    assert_eq!(binance.requests().len(), 2);
    assert!(binance
        .requests()
        .iter()
        .all(|r| r.outcome == Outcome::Accepted));
    assert_eq!(kraken.requests()[0].outcome, Outcome::Accepted);

    // The raw answer: exactly what to send, never the secret.
    let raw = server.call(
        "POST",
        &format!("/users/{trader_id}/broker-credentials/binance/sign"),
        Some(&token(SERVICE)),
        Some(json!({"method": "GET", "path": "/api/v3/openOrders", "query": "symbol=BTCUSDT"})),
    );
    assert_eq!(raw.status, 200, "{}", raw.text);
    assert_eq!(raw.header("cache-control"), Some("no-store"));
    assert_eq!(raw.body["headers"]["X-MBX-APIKEY"], BINANCE_KEY);
    let query = raw.body["query"].as_str().unwrap();
    assert!(
        query.starts_with("symbol=BTCUSDT&recvWindow=5000&timestamp="),
        "{query}"
    );
    assert!(query.contains("&signature="), "{query}");

    // Each signature is audited with the service, the method and the path, never a value.
    let audit = server.db.count_rows(
        "credential_audit_events",
        &format!(
            "action = 'sign' AND outcome = 'success' AND actor_service = '{SERVICE}' \
             AND actor_id IS NULL AND target_user_id = {trader_id}"
        ),
    );
    assert_eq!(audit, 4);
    assert_eq!(
        server.db.count_rows(
            "credential_audit_events",
            "action = 'sign' AND detail = 'POST /api/v3/order' AND broker = 'binance'"
        ),
        1
    );
    assert_eq!(
        server.db.count_rows(
            "credential_audit_events",
            "action = 'trading_consent' AND outcome = 'enabled'"
        ),
        3
    );
    let metrics = server.call("GET", "/metrics", None, None).text;
    assert!(
        metrics.contains("broker_signatures_total{broker=\"binance\",outcome=\"signed\"} 3"),
        "{metrics}"
    );
    let everything = server.output();
    for secret in [BINANCE_SECRET, KRAKEN_SECRET, ALPACA_SECRET, JWT_SECRET] {
        assert!(!everything.contains(secret), "the log holds a secret");
        assert!(!raw.text.contains(secret), "the answer holds a secret");
        assert_eq!(
            server.db.count_rows(
                "credential_audit_events",
                &format!("detail LIKE '%{secret}%' OR outcome LIKE '%{secret}%'")
            ),
            0
        );
    }
    assert!(
        !everything.contains("BTCUSDT"),
        "the log holds order parameters"
    );
}

crate::test_on_both_backends!(
    signed_requests_are_accepted_by_the_brokers,
    every_refusal_has_its_status_and_code,
);

/// `(status, code)` of a signing call by `token` for `user`'s `broker` key.
fn refusal(
    server: &TestServer,
    token: &str,
    user: i64,
    broker: &str,
    request: Value,
) -> (u16, String) {
    let answer = server.call(
        "POST",
        &format!("/users/{user}/broker-credentials/{broker}/sign"),
        Some(token),
        Some(request),
    );
    assert!(!answer.text.contains(BINANCE_SECRET), "{}", answer.text);
    (
        answer.status,
        answer.body["code"].as_str().unwrap_or_default().to_owned(),
    )
}

fn every_refusal_has_its_status_and_code(backend: Backend) {
    let Some(server) = TestServer::spawn_app(
        backend,
        &[
            ("SIGNING_SERVICES", Some("order-router, risk-engine")),
            FRESH_ENTITLEMENTS,
        ],
    ) else {
        return;
    };
    let (trader_id, trader) = consenting_trader(&server, "refused@example.com");
    let (_, operator) = server.user("operator@example.com", true);
    let account = json!({"method": "GET", "path": "/api/v3/account"});
    let service = token(SERVICE);
    let code = |token: &str, user: i64, broker: &str, request: Value| {
        refusal(&server, token, user, broker, request)
    };
    let expect = |got: (u16, String), status: u16, code: &str| {
        assert_eq!((got.0, got.1.as_str()), (status, code));
    };

    // Who may call, then which broker and which request: (caller, broker, request, answer).
    let withdraw = json!({
        "method": "POST",
        "path": "/sapi/v1/capital/withdraw/apply",
        "body": "coin=BTC&amount=10",
    });
    let forged = json!({"method": "GET", "path": "/api/v3/account", "query": "signature=f"});
    // A table: one refusal per line.
    #[rustfmt::skip]
    let cases = [
        (&trader, "binance", &account, 403, "service_principal_required"),
        (&operator, "binance", &account, 403, "service_principal_required"),
        (&token("billing"), "binance", &account, 403, "signing_service_not_listed"),
        (&"not-a-token".to_owned(), "binance", &account, 401, "invalid_token"),
        // The second name of the list is allowed too.
        (&token("risk-engine"), "binance", &account, 200, ""),
        (&service, "alpaca", &json!({"method": "GET", "path": "/v2/account"}), 409, "signing_unsupported"),
        (&service, "coinbase", &account, 409, "signing_unsupported"),
        (&service, "binance", &withdraw, 403, "signing_path_refused"),
        (&service, "binance", &forged, 422, "validation_error"),
        (&service, "binance", &json!({"method": "PATCH", "path": "/a"}), 422, "validation_error"),
        (&service, "binance", &json!({"path": "/api/v3/account"}), 422, "validation_error"),
    ];
    for (caller, broker, request, status, error) in cases {
        let got = code(caller, trader_id, broker, request.clone());
        assert_eq!(
            (got.0, got.1.as_str()),
            (status, error),
            "{broker} {request}"
        );
    }
    let missing = server.call(
        "POST",
        &format!("/users/{trader_id}/broker-credentials/binance/sign"),
        None,
        Some(account.clone()),
    );
    assert_eq!(missing.status, 401);

    // Whose key.
    expect(
        code(&service, 999_999, "binance", account.clone()),
        404,
        "not_found",
    );
    let (other_id, other) = server.user("no-keys@example.com", false);
    server.cli(&["grant", "no-keys@example.com", "can.route_orders"]);
    expect(
        code(&service, other_id, "binance", account.clone()),
        404,
        "not_found",
    );

    // Consent: off after a new secret, and only the owner gives it.
    let replaced = server.put_credentials(
        &trader,
        json!([{"broker": "binance", "api_secret": "a-new-binance-secret-0005"}]),
    );
    assert_eq!(entry(&replaced.body, "binance")["trading_enabled"], false);
    expect(
        code(&service, trader_id, "binance", account.clone()),
        403,
        "trading_not_enabled",
    );
    let by_operator = server.call(
        "PUT",
        &format!("/users/{trader_id}/broker-credentials"),
        Some(&operator),
        Some(json!({"credentials": [{"broker": "binance", "trading_enabled": true}]})),
    );
    assert_eq!(
        (by_operator.status, by_operator.body["code"].as_str()),
        (403, Some("owner_consent_required"))
    );
    let nothing_stored = server.put_credentials(
        &other,
        json!([{"broker": "binance", "trading_enabled": true}]),
    );
    // Nothing stored, nothing to consent to: the entry changes nothing, like clearing it.
    assert_eq!(
        (nothing_stored.status, &nothing_stored.body),
        (200, &json!({"credentials": []}))
    );
    // A consent change alone keeps the connection test result.
    server.db.execute(&format!(
        "UPDATE user_broker_credentials SET last_test_status = 'ok' \
         WHERE user_id = {trader_id} AND broker = 'kraken'"
    ));
    for on in [false, true] {
        let changed = server.put_credentials(
            &trader,
            json!([{"broker": "kraken", "trading_enabled": on}]),
        );
        let kraken = entry(&changed.body, "kraken");
        assert_eq!(
            (&kraken["trading_enabled"], &kraken["last_test_status"]),
            (&json!(on), &json!("ok"))
        );
    }
    // Kraken's consent is untouched by Binance's new secret.
    let balance = json!({"method": "POST", "path": "/0/private/Balance"});
    expect(
        code(&service, trader_id, "kraken", balance.clone()),
        200,
        "",
    );

    // A consent turned on behind the service's back (SQL) breaks the row's integrity tag.
    server.db.execute(&format!(
        "UPDATE user_broker_credentials SET trading_enabled = TRUE WHERE user_id = {trader_id} AND broker = 'binance'"
    ));
    expect(
        code(&service, trader_id, "binance", account.clone()),
        409,
        "credential_unusable",
    );

    // The trader's capability.
    server.cli(&["revoke", "refused@example.com", "can.route_orders"]);
    expect(
        code(&service, trader_id, "kraken", balance),
        403,
        "missing_capability",
    );

    // Refusals after the credential was found are audited too.
    assert!(
        server.db.count_rows(
            "credential_audit_events",
            "action = 'sign' AND outcome = 'trading_not_enabled'"
        ) >= 1
    );
    let metrics = server.call("GET", "/metrics", None, None).text;
    assert!(
        metrics.contains("outcome=\"trading_not_enabled\""),
        "{metrics}"
    );
}

#[test]
fn without_signing_services_the_route_is_off() {
    let Some(server) = TestServer::spawn_app(Backend::Sqlite, &[FRESH_ENTITLEMENTS]) else {
        return;
    };
    let (trader_id, _) = consenting_trader(&server, "off@example.com");
    let (status, code) = refusal(
        &server,
        &token(SERVICE),
        trader_id,
        "binance",
        json!({"method": "GET", "path": "/api/v3/account"}),
    );
    assert_eq!((status, code.as_str()), (403, "signing_service_not_listed"));
}

#[test]
fn signatures_are_rate_limited_per_trader_and_per_service() {
    let Some(server) = TestServer::spawn_app(
        Backend::Sqlite,
        &[
            ("SIGNING_SERVICES", Some(SERVICE)),
            ("SIGNATURES_PER_USER_PER_MINUTE", Some("2")),
            ("SIGNATURES_PER_SERVICE_PER_MINUTE", Some("3")),
            FRESH_ENTITLEMENTS,
        ],
    ) else {
        return;
    };
    let (trader_id, _) = consenting_trader(&server, "limited@example.com");
    let account = json!({"method": "GET", "path": "/api/v3/account"});
    let service = token(SERVICE);
    for _ in 0..2 {
        assert_eq!(
            refusal(&server, &service, trader_id, "binance", account.clone()).0,
            200
        );
    }
    let answer = server.call(
        "POST",
        &format!("/users/{trader_id}/broker-credentials/binance/sign"),
        Some(&service),
        Some(account.clone()),
    );
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (429, Some("rate_limited"))
    );
    assert!(answer.header("retry-after").is_some());
    // Three calls reached the service's limit: another trader's first one is refused too.
    let (other_id, _) = consenting_trader(&server, "limited-too@example.com");
    assert_eq!(
        refusal(&server, &service, other_id, "binance", account.clone()),
        (429, "rate_limited".to_owned())
    );
    let metrics = server.call("GET", "/metrics", None, None).text;
    for limit in ["signing_per_user", "signing_per_service"] {
        assert!(
            metrics.contains(&format!("rate_limited_total{{limit=\"{limit}\"}} 1")),
            "{metrics}"
        );
    }
}
