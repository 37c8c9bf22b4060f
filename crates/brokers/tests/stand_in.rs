//! The signatures of `BrokerProtocols` against the stand-ins, which verify them as the brokers
//! do: accepted when right, refused when anything was changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::{Duration, Utc};
use support::*;
use user_service_brokers::stand_in::{BinanceStandIn, KrakenStandIn, Outcome, Recorded};
use user_service_domain::HttpMethod::{Get, Post};

fn binance() -> BinanceStandIn {
    BinanceStandIn::start([(BINANCE_KEY, BINANCE_SECRET)]).unwrap()
}

fn kraken() -> KrakenStandIn {
    KrakenStandIn::start([(KRAKEN_KEY, KRAKEN_SECRET)]).unwrap()
}

fn refused(reason: &str) -> Outcome {
    Outcome::Refused(reason.to_owned())
}

#[test]
fn binance_accepts_account_and_orders_signed_by_broker_protocols() {
    let stand_in = binance();
    let url = stand_in.url();

    let account = request(Get, "/api/v3/account", None, None);
    let (status, answer) = send(
        &url,
        Get,
        "/api/v3/account",
        &sign("binance", &account, BINANCE_KEY, BINANCE_SECRET),
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer["balances"].is_array());

    // Parameters in the body only (Binance's example 1), with a form body.
    let body_only = request(
        Post,
        "/api/v3/order",
        None,
        Some("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=20000"),
    );
    let (status, answer) = send(
        &url,
        Post,
        "/api/v3/order",
        &sign("binance", &body_only, BINANCE_KEY, BINANCE_SECRET),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["symbol"], "BTCUSDT");
    assert_eq!(answer["status"], "NEW");
    assert_eq!(answer["price"], "20000");

    // Mixed query and body (example 3).
    let mixed = request(
        Post,
        "/api/v3/order",
        Some("symbol=ETHUSDT&side=SELL&type=LIMIT&timeInForce=GTC"),
        Some("quantity=1&price=3000"),
    );
    let (status, answer) = send(
        &url,
        Post,
        "/api/v3/order",
        &sign("binance", &mixed, BINANCE_KEY, BINANCE_SECRET),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["side"], "SELL");
    assert_eq!(answer["origQty"], "1");

    // Query only (example 2), on the test endpoint.
    let test_order = request(
        Post,
        "/api/v3/order/test",
        Some("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01"),
        None,
    );
    let (status, answer) = send(
        &url,
        Post,
        "/api/v3/order/test",
        &sign("binance", &test_order, BINANCE_KEY, BINANCE_SECRET),
    );
    assert_eq!((status, answer), (200, serde_json::json!({})));

    let paths: Vec<(String, String, Outcome)> = stand_in
        .requests()
        .into_iter()
        .map(
            |Recorded {
                 method,
                 path,
                 outcome,
             }| (method, path, outcome),
        )
        .collect();
    assert_eq!(
        paths,
        [
            ("GET".into(), "/api/v3/account".into(), Outcome::Accepted),
            ("POST".into(), "/api/v3/order".into(), Outcome::Accepted),
            ("POST".into(), "/api/v3/order".into(), Outcome::Accepted),
            (
                "POST".into(),
                "/api/v3/order/test".into(),
                Outcome::Accepted
            ),
        ]
    );
}

#[test]
fn binance_refuses_a_wrong_secret_and_an_unknown_key() {
    let stand_in = binance();
    let account = request(Get, "/api/v3/account", None, None);
    let (status, answer) = send(
        &stand_in.url(),
        Get,
        "/api/v3/account",
        &sign("binance", &account, BINANCE_KEY, "not-the-secret"),
    );
    assert_eq!((status, answer["code"].as_i64()), (400, Some(-1022)));
    let (status, answer) = send(
        &stand_in.url(),
        Get,
        "/api/v3/account",
        &sign("binance", &account, "unknown-key", BINANCE_SECRET),
    );
    assert_eq!((status, answer["code"].as_i64()), (401, Some(-2015)));
    assert_eq!(
        stand_in
            .requests()
            .into_iter()
            .map(|r| r.outcome)
            .collect::<Vec<_>>(),
        [refused("-1022"), refused("-2015")]
    );
}

#[test]
fn binance_refuses_a_tampered_query_or_body() {
    let stand_in = binance();
    let order = request(
        Post,
        "/api/v3/order",
        Some("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"),
        Some("quantity=0.01&price=20000"),
    );
    let signed = sign("binance", &order, BINANCE_KEY, BINANCE_SECRET);

    let mut tampered_query = signed.clone();
    tampered_query.query = tampered_query.query.replace("side=BUY", "side=SELL");
    let (status, answer) = send(&stand_in.url(), Post, "/api/v3/order", &tampered_query);
    assert_eq!((status, answer["code"].as_i64()), (400, Some(-1022)));

    let mut tampered_body = signed.clone();
    tampered_body.body = tampered_body.body.replace("quantity=0.01", "quantity=100");
    let (status, answer) = send(&stand_in.url(), Post, "/api/v3/order", &tampered_body);
    assert_eq!((status, answer["code"].as_i64()), (400, Some(-1022)));

    // Moving a parameter from the query to the body changes totalParams.
    let mut moved = signed.clone();
    moved.query = "symbol=BTCUSDT&side=BUY&type=LIMIT".to_owned();
    moved.body = format!("timeInForce=GTC{}", signed.body);
    let (status, answer) = send(&stand_in.url(), Post, "/api/v3/order", &moved);
    assert_eq!((status, answer["code"].as_i64()), (400, Some(-1022)));

    // The untouched request still goes through.
    let (status, _) = send(&stand_in.url(), Post, "/api/v3/order", &signed);
    assert_eq!(status, 200);
}

#[test]
fn binance_refuses_an_expired_or_future_timestamp() {
    let stand_in = binance();
    let account = request(Get, "/api/v3/account", None, None);
    for when in [
        Utc::now() - Duration::minutes(10),
        Utc::now() - Duration::seconds(30),
        Utc::now() + Duration::seconds(30),
    ] {
        let signed = sign_at("binance", &account, BINANCE_KEY, BINANCE_SECRET, when).unwrap();
        let (status, answer) = send(&stand_in.url(), Get, "/api/v3/account", &signed);
        assert_eq!(
            (status, answer["code"].as_i64()),
            (400, Some(-1021)),
            "{when}"
        );
    }
    // A wider window set by the caller is honoured, and signed.
    let wide = request(Get, "/api/v3/account", Some("recvWindow=60000"), None);
    let signed = sign_at(
        "binance",
        &wide,
        BINANCE_KEY,
        BINANCE_SECRET,
        Utc::now() - Duration::seconds(30),
    )
    .unwrap();
    let (status, _) = send(&stand_in.url(), Get, "/api/v3/account", &signed);
    assert_eq!(status, 200);
}

#[test]
fn binance_refuses_a_missing_key_header_and_a_missing_signature() {
    let stand_in = binance();
    let account = request(Get, "/api/v3/account", None, None);
    let mut signed = sign("binance", &account, BINANCE_KEY, BINANCE_SECRET);
    let mut without_key = signed.clone();
    without_key.headers.clear();
    let (status, answer) = send(&stand_in.url(), Get, "/api/v3/account", &without_key);
    assert_eq!((status, answer["code"].as_i64()), (401, Some(-2014)));
    signed.query = signed
        .query
        .rsplit_once("&signature=")
        .unwrap()
        .0
        .to_owned();
    let (status, answer) = send(&stand_in.url(), Get, "/api/v3/account", &signed);
    assert_eq!((status, answer["code"].as_i64()), (400, Some(-1102)));
}

#[test]
fn kraken_accepts_balance_and_orders_signed_by_broker_protocols() {
    let stand_in = kraken();
    let url = stand_in.url();
    let balance = request(Post, "/0/private/Balance", None, None);
    let (status, answer) = send(
        &url,
        Post,
        "/0/private/Balance",
        &sign("kraken", &balance, KRAKEN_KEY, KRAKEN_SECRET),
    );
    assert_eq!(status, 200);
    assert_eq!(answer["error"], serde_json::json!([]), "{answer}");
    assert!(answer["result"]["ZUSD"].is_string());

    let order = request(
        Post,
        "/0/private/AddOrder",
        None,
        Some("ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"),
    );
    let (status, answer) = send(
        &url,
        Post,
        "/0/private/AddOrder",
        &sign("kraken", &order, KRAKEN_KEY, KRAKEN_SECRET),
    );
    assert_eq!(status, 200);
    assert_eq!(answer["error"], serde_json::json!([]), "{answer}");
    assert_eq!(
        answer["result"]["descr"]["order"],
        "buy 1.25 XBTUSD @ limit 37500"
    );
    assert_eq!(answer["result"]["txid"].as_array().map(Vec::len), Some(1));

    let validate_only = request(
        Post,
        "/0/private/AddOrder",
        None,
        Some("ordertype=market&pair=XBTUSD&type=sell&volume=0.1&validate=true"),
    );
    let (_, answer) = send(
        &url,
        Post,
        "/0/private/AddOrder",
        &sign("kraken", &validate_only, KRAKEN_KEY, KRAKEN_SECRET),
    );
    assert_eq!(answer["error"], serde_json::json!([]), "{answer}");
    assert!(answer["result"].get("txid").is_none());
    assert!(stand_in.requests().iter().all(|r| r.outcome.is_accepted()));
}

#[test]
fn kraken_refuses_a_wrong_secret_an_unknown_key_and_a_tampered_body() {
    let stand_in = kraken();
    let order = request(
        Post,
        "/0/private/AddOrder",
        None,
        Some("ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"),
    );
    let other_secret = "b3RoZXIgc2VjcmV0";
    let (_, answer) = send(
        &stand_in.url(),
        Post,
        "/0/private/AddOrder",
        &sign("kraken", &order, KRAKEN_KEY, other_secret),
    );
    assert_eq!(answer["error"][0], "EAPI:Invalid signature");
    let (_, answer) = send(
        &stand_in.url(),
        Post,
        "/0/private/AddOrder",
        &sign("kraken", &order, "unknown-key", KRAKEN_SECRET),
    );
    assert_eq!(answer["error"][0], "EAPI:Invalid key");
    let mut tampered = sign("kraken", &order, KRAKEN_KEY, KRAKEN_SECRET);
    tampered.body = tampered.body.replace("volume=1.25", "volume=125");
    let (_, answer) = send(&stand_in.url(), Post, "/0/private/AddOrder", &tampered);
    assert_eq!(answer["error"][0], "EAPI:Invalid signature");
    // The same request to another path is refused too: the path is signed.
    let balance = sign(
        "kraken",
        &request(Post, "/0/private/Balance", None, None),
        KRAKEN_KEY,
        KRAKEN_SECRET,
    );
    let (_, answer) = send(&stand_in.url(), Post, "/0/private/AddOrder", &balance);
    assert_eq!(answer["error"][0], "EAPI:Invalid signature");
}

#[test]
fn kraken_refuses_a_replayed_or_older_nonce() {
    let stand_in = kraken();
    let balance = request(Post, "/0/private/Balance", None, None);
    let signed = sign("kraken", &balance, KRAKEN_KEY, KRAKEN_SECRET);
    let (_, first) = send(&stand_in.url(), Post, "/0/private/Balance", &signed);
    assert_eq!(first["error"], serde_json::json!([]));
    let (_, replayed) = send(&stand_in.url(), Post, "/0/private/Balance", &signed);
    assert_eq!(replayed["error"][0], "EAPI:Invalid nonce");

    // A nonce chosen by the caller is kept and signed as is; a smaller one than the last is
    // refused even though correctly signed.
    let older = request(
        Post,
        "/0/private/Balance",
        None,
        Some("nonce=1616492376594"),
    );
    let (_, answer) = send(
        &stand_in.url(),
        Post,
        "/0/private/Balance",
        &sign("kraken", &older, KRAKEN_KEY, KRAKEN_SECRET),
    );
    assert_eq!(answer["error"][0], "EAPI:Invalid nonce");

    // Fresh nonces keep working, many in a row.
    for _ in 0..20 {
        let (_, answer) = send(
            &stand_in.url(),
            Post,
            "/0/private/Balance",
            &sign("kraken", &balance, KRAKEN_KEY, KRAKEN_SECRET),
        );
        assert_eq!(answer["error"], serde_json::json!([]), "{answer}");
    }
    let outcomes: Vec<Outcome> = stand_in.requests().into_iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes[..3],
        [
            Outcome::Accepted,
            refused("EAPI:Invalid nonce"),
            refused("EAPI:Invalid nonce")
        ]
    );
}

#[test]
fn a_stand_in_simulates_an_outage_and_stops_when_dropped() {
    let stand_in = binance();
    let url = stand_in.url();
    stand_in.set_outage(Some(503));
    let account = request(Get, "/api/v3/account", None, None);
    let (status, _) = send(
        &url,
        Get,
        "/api/v3/account",
        &sign("binance", &account, BINANCE_KEY, BINANCE_SECRET),
    );
    assert_eq!(status, 503);
    stand_in.set_outage(None);
    let (status, _) = send(
        &url,
        Get,
        "/api/v3/account",
        &sign("binance", &account, BINANCE_KEY, BINANCE_SECRET),
    );
    assert_eq!(status, 200);
    drop(stand_in);
    let addr = url.trim_start_matches("http://");
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn debug_of_the_stand_ins_shows_no_key_or_secret() {
    let binance = binance();
    let kraken = kraken();
    let shown = format!("{binance:?} {kraken:?}");
    for value in [BINANCE_KEY, BINANCE_SECRET, KRAKEN_KEY, KRAKEN_SECRET] {
        assert!(!shown.contains(value), "{shown}");
    }
    assert!(KrakenStandIn::start([("k", "not base64!")]).is_err());
}

#[test]
fn binance_reads_a_chunked_body_as_the_broker_does() {
    let stand_in = binance();
    let order = request(
        Post,
        "/api/v3/order",
        None,
        Some("symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=20000"),
    );
    let signed = sign("binance", &order, BINANCE_KEY, BINANCE_SECRET);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut reader = signed.body.as_bytes();
    // A body of unknown length is sent chunked.
    let builder = signed.headers.iter().fold(
        ureq::http::Request::builder()
            .method("POST")
            .uri(format!("{}/api/v3/order", stand_in.url())),
        |b, (name, value)| b.header(name, value),
    );
    let response = agent
        .run(
            builder
                .body(ureq::SendBody::from_reader(&mut reader))
                .unwrap(),
        )
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(stand_in.requests()[0].outcome, Outcome::Accepted);
}
