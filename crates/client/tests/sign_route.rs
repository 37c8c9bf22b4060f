//! The client against a loopback fake of user-service's signing route: the wire format both
//! ways, the errors, and (with the real signers and the broker stand-ins behind the fake) orders
//! that the brokers accept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};
use user_service_client::{BrokerRequest, ClientError, Method, SigningClient};
use user_service_test_support::stub::{closed_port_url, Request, Stub};

const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvcmRlci1yb3V0ZXIifQ.service-token-signature";

/// The JSON body of a request the stub received.
fn json_of(request: &Request) -> Value {
    serde_json::from_str(&request.body).unwrap()
}

/// The error of having user 3's Binance account request signed through `client`.
fn account_error(client: &SigningClient) -> ClientError {
    client
        .sign(3, "binance", &BrokerRequest::get("/api/v3/account"))
        .unwrap_err()
}

fn client(url: &str) -> SigningClient {
    SigningClient::new(url, SecretString::from(TOKEN))
}

fn answer(status: u16, body: Value) -> (u16, String) {
    (status, body.to_string())
}

#[test]
fn sign_sends_the_documented_request_and_reads_the_answer() {
    let service = Stub::start(|_| {
        answer(
            200,
            json!({
                "headers": {
                    "X-MBX-APIKEY": "api-key-from-the-vault",
                    "Content-Type": "application/x-www-form-urlencoded"
                },
                "query": "symbol=BTCUSDT&side=BUY",
                "body": "quantity=0.01&price=20000&recvWindow=5000&timestamp=1&signature=ab12"
            }),
        )
    });
    let order = BrokerRequest::post("/api/v3/order")
        .query("symbol", "BTCUSDT")
        .query("side", "BUY")
        .form("quantity", "0.01")
        .form("price", "20000");
    let ready = client(&format!("{}/", service.url()))
        .sign(42, "binance", &order)
        .unwrap();

    let sent = &service.requests()[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.target, "/users/42/broker-credentials/binance/sign");
    assert_eq!(
        sent.header("Authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(sent.header("Content-Type"), Some("application/json"));
    assert_eq!(
        json_of(sent),
        json!({
            "method": "POST",
            "path": "/api/v3/order",
            "query": "symbol=BTCUSDT&side=BUY",
            "body": "quantity=0.01&price=20000"
        })
    );

    assert_eq!(ready.method(), Method::Post);
    assert_eq!(
        ready.url("https://api.binance.com/"),
        "https://api.binance.com/api/v3/order?symbol=BTCUSDT&side=BUY"
    );
    let mut headers: Vec<(&str, &str)> = ready.expose_headers().collect();
    headers.sort_unstable();
    assert_eq!(
        headers,
        [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-MBX-APIKEY", "api-key-from-the-vault")
        ]
    );
    assert_eq!(
        ready.body(),
        "quantity=0.01&price=20000&recvWindow=5000&timestamp=1&signature=ab12"
    );
    let shown = format!("{ready:?}");
    assert!(shown.contains("X-MBX-APIKEY"), "{shown}");
    for hidden in ["api-key-from-the-vault", "signature=ab12", "BTCUSDT"] {
        assert!(!shown.contains(hidden), "{shown}");
    }
}

#[test]
fn absent_query_and_body_are_left_out_of_the_request() {
    let service = Stub::start(|_| {
        answer(
            200,
            json!({ "headers": {}, "query": "timestamp=1&signature=ab" }),
        )
    });
    let ready = client(&service.url())
        .sign(7, "binance", &BrokerRequest::get("/api/v3/account"))
        .unwrap();
    assert_eq!(
        json_of(&service.requests()[0]),
        json!({ "method": "GET", "path": "/api/v3/account" })
    );
    // A missing body in the answer is an empty body.
    assert_eq!(ready.body(), "");
    assert_eq!(
        ready.url("http://broker"),
        "http://broker/api/v3/account?timestamp=1&signature=ab"
    );
}

#[test]
fn the_broker_receives_exactly_what_was_answered() {
    let service = Stub::start(|_| {
        answer(
            200,
            json!({
                "headers": {
                    "API-Key": "kraken-key",
                    "API-Sign": "c2lnbmF0dXJl",
                    "Content-Type": "application/x-www-form-urlencoded"
                },
                "query": "",
                "body": "nonce=1&ordertype=limit&pair=XBTUSD"
            }),
        )
    });
    let broker = Stub::start(|_| answer(200, json!({ "error": [], "result": {} })));
    let ready = client(&service.url())
        .sign(
            1,
            "kraken",
            &BrokerRequest::post("/0/private/AddOrder")
                .form("ordertype", "limit")
                .form("pair", "XBTUSD"),
        )
        .unwrap();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let response = ready.send(&agent, &broker.url()).unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let received = &broker.requests()[0];
    assert_eq!(received.method, "POST");
    assert_eq!(received.target, "/0/private/AddOrder");
    assert_eq!(received.header("API-Key"), Some("kraken-key"));
    assert_eq!(received.header("API-Sign"), Some("c2lnbmF0dXJl"));
    assert_eq!(
        received.header("Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(received.body, "nonce=1&ordertype=limit&pair=XBTUSD");
    assert!(
        received.header("Authorization").is_none(),
        "the token reached the broker"
    );
}

#[test]
fn a_post_without_body_is_sent_with_content_length_zero() {
    let service =
        Stub::start(|_| answer(200, json!({ "headers": {}, "query": "a=1&signature=ab" })));
    let broker = Stub::start(|_| answer(200, json!({})));
    let ready = client(&service.url())
        .sign(1, "binance", &BrokerRequest::post("/api/v3/order/test"))
        .unwrap();
    let agent = ureq::Agent::new_with_defaults();
    ready.send(&agent, &broker.url()).unwrap();
    let received = &broker.requests()[0];
    assert_eq!(received.target, "/api/v3/order/test?a=1&signature=ab");
    assert_eq!(received.header("Content-Length"), Some("0"));
    assert!(received.header("Transfer-Encoding").is_none());
}

#[test]
fn refusals_carry_status_code_detail_and_request_id() {
    let cases = [
        (400, "invalid_request"),
        (401, "invalid_token"),
        (403, "trading_not_enabled"),
        (403, "signing_path_refused"),
        (404, "missing_credentials"),
        (409, "signing_unsupported"),
        (422, "invalid_request"),
        (429, "rate_limited"),
        (503, "database_unavailable"),
    ];
    for (status, code) in cases {
        let service = Stub::start(move |_| {
            answer(
                status,
                json!({ "detail": format!("refused: {code}"), "code": code, "request_id": "req-1" }),
            )
        });
        let error = account_error(&client(&service.url()));
        assert_eq!(
            error,
            ClientError::Refused {
                status,
                code: Some(code.to_owned()),
                detail: Some(format!("refused: {code}")),
                request_id: Some("req-1".to_owned()),
            }
        );
        assert_eq!((error.status(), error.code()), (Some(status), Some(code)));
        let shown = format!("{error} {error:?}");
        assert!(
            shown.contains(code) && shown.contains(&status.to_string()),
            "{shown}"
        );
        assert!(!shown.contains("service-token"), "{shown}");
    }
}

#[test]
fn an_error_that_is_not_json_still_gives_the_status() {
    let service = Stub::start(|_| (502, "<html>Bad gateway</html>".to_owned()));
    let error = account_error(&client(&service.url()));
    assert_eq!(
        error,
        ClientError::Refused {
            status: 502,
            code: None,
            detail: None,
            request_id: None
        }
    );
}

#[test]
fn a_200_that_is_not_a_signed_request_is_an_error() {
    let service = Stub::start(|_| answer(200, json!({ "status": "ok" })));
    let error = account_error(&client(&service.url()));
    assert!(matches!(error, ClientError::InvalidAnswer(_)), "{error:?}");
}

#[test]
fn an_unreachable_service_is_a_transport_error() {
    let error = account_error(&client(&closed_port_url()));
    assert_eq!(
        error,
        ClientError::Transport("connection refused".to_owned())
    );

    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = SigningClient::with_timeout(
        format!("http://{}", silent.local_addr().unwrap()),
        SecretString::from(TOKEN),
        Duration::from_millis(200),
    );
    let error = account_error(&slow);
    assert!(
        matches!(&error, ClientError::Transport(cause) if cause.starts_with("timeout")),
        "{error:?}"
    );
}

#[test]
fn the_broker_name_is_one_encoded_path_segment() {
    let service =
        Stub::start(|_| answer(404, json!({ "detail": "x", "code": "missing_credentials" })));
    let _ = client(&service.url()).sign(3, "../admin", &BrokerRequest::get("/api/v3/account"));
    assert_eq!(
        service.requests()[0].target,
        "/users/3/broker-credentials/..%2Fadmin/sign"
    );
}

#[test]
fn a_request_the_service_would_refuse_is_not_sent() {
    let service = Stub::start(|_| answer(200, json!({ "headers": {} })));
    for request in [
        BrokerRequest::get("api/v3/account"),
        BrokerRequest::get("/api/v3/account?x=1"),
        BrokerRequest::get("/api/v3/account").form("a", "1"),
    ] {
        assert!(matches!(
            client(&service.url()).sign(3, "binance", &request),
            Err(ClientError::InvalidRequest(_))
        ));
    }
    assert!(matches!(
        client(&service.url()).sign(3, "", &BrokerRequest::get("/api/v3/account")),
        Err(ClientError::InvalidRequest(_))
    ));
    assert!(service.requests().is_empty());
}

/// The signing route as user-service builds it, reduced to what the wire format needs: the real
/// signers behind a fake HTTP edge.
mod end_to_end {
    use super::*;
    use chrono::Utc;
    use user_service_brokers::stand_in::{BinanceStandIn, KrakenStandIn, Outcome};
    use user_service_brokers::BrokerProtocols;
    use user_service_domain::{
        BrokerId, HttpMethod, PlainSecret, RequestSigner, SignError, UnsignedRequest,
    };

    const BINANCE_KEY: &str = "e2e-binance-key";
    const BINANCE_SECRET: &str = "e2e-binance-secret";
    const KRAKEN_KEY: &str = "e2e-kraken-key";
    const KRAKEN_SECRET: &str = "ZTJlIGtyYWtlbiBzZWNyZXQgb2YgYSB0cmFkZXI=";

    fn signing_route(request: &Request) -> (u16, String) {
        let parts: Vec<&str> = request.target.split('/').collect();
        let broker = BrokerId::parse(parts[4]).unwrap();
        let (key, secret) = match broker.as_str() {
            "binance" => (BINANCE_KEY, BINANCE_SECRET),
            "kraken" => (KRAKEN_KEY, KRAKEN_SECRET),
            _ => ("alpaca-key", "alpaca-secret"),
        };
        let body = json_of(request);
        let unsigned = HttpMethod::parse(body["method"].as_str().unwrap()).and_then(|method| {
            UnsignedRequest::parse(
                method,
                body["path"].as_str().unwrap(),
                body["query"].as_str(),
                body["body"].as_str(),
            )
        });
        let signed = unsigned.and_then(|unsigned| {
            BrokerProtocols::new().sign(
                &broker,
                &unsigned,
                &PlainSecret::new(key),
                &PlainSecret::new(secret),
                Utc::now(),
            )
        });
        match signed {
            Ok(signed) => {
                let headers: serde_json::Map<String, Value> = signed
                    .headers
                    .into_iter()
                    .map(|(name, value)| (name, Value::String(value)))
                    .collect();
                answer(
                    200,
                    json!({ "headers": headers, "query": signed.query, "body": signed.body }),
                )
            }
            Err(SignError::Unsupported) => answer(
                409,
                json!({ "detail": "Signing is not supported for this broker", "code": "signing_unsupported", "request_id": "r" }),
            ),
            Err(SignError::PathNotAllowed) => answer(
                403,
                json!({ "detail": "Request not allowed by the signing policy", "code": "signing_path_refused", "request_id": "r" }),
            ),
            Err(error) => answer(
                422,
                json!({ "detail": error.to_string(), "code": "invalid_request", "request_id": "r" }),
            ),
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
    }

    /// Has `request` signed with user 42's `broker` key through the route, sends it to `url`,
    /// and answers the status and the JSON body.
    fn signed_and_sent(
        client: &SigningClient,
        broker: &str,
        request: &BrokerRequest,
        url: &str,
    ) -> (u16, Value) {
        let mut response = client
            .sign(42, broker, request)
            .unwrap()
            .send(&agent(), url)
            .unwrap();
        let body = response.body_mut().read_to_string().unwrap();
        (
            response.status().as_u16(),
            serde_json::from_str(&body).unwrap(),
        )
    }

    #[test]
    fn orders_signed_through_the_route_are_accepted_by_the_stand_ins() {
        let service = Stub::start(signing_route);
        let binance = BinanceStandIn::start([(BINANCE_KEY, BINANCE_SECRET)]).unwrap();
        let kraken = KrakenStandIn::start([(KRAKEN_KEY, KRAKEN_SECRET)]).unwrap();
        let client = client(&service.url());

        let order = BrokerRequest::post("/api/v3/order")
            .query("symbol", "BTCUSDT")
            .form("side", "BUY")
            .form("type", "LIMIT")
            .form("timeInForce", "GTC")
            .form("quantity", "0.01")
            .form("price", "20000");
        let (status, placed) = signed_and_sent(&client, "binance", &order, &binance.url());
        assert_eq!(status, 200);
        assert_eq!(
            (placed["symbol"].as_str(), placed["status"].as_str()),
            (Some("BTCUSDT"), Some("NEW"))
        );

        let account = BrokerRequest::get("/api/v3/account");
        let (status, _) = signed_and_sent(&client, "binance", &account, &binance.url());
        assert_eq!(status, 200);

        let add_order = BrokerRequest::post("/0/private/AddOrder")
            .form("ordertype", "limit")
            .form("type", "buy")
            .form("volume", "1.25")
            .form("pair", "XBTUSD")
            .form("price", "37500");
        let (_, added) = signed_and_sent(&client, "kraken", &add_order, &kraken.url());
        assert_eq!(added["error"], json!([]), "{added}");

        assert!(binance
            .requests()
            .iter()
            .all(|r| r.outcome == Outcome::Accepted));
        assert_eq!(binance.requests().len(), 2);
        assert_eq!(kraken.requests()[0].outcome, Outcome::Accepted);
    }

    #[test]
    fn refusals_of_the_route_reach_the_caller_with_their_codes() {
        let service = Stub::start(signing_route);
        let client = client(&service.url());
        let error = client
            .sign(42, "alpaca", &BrokerRequest::get("/v2/account"))
            .unwrap_err();
        assert_eq!(
            (error.status(), error.code()),
            (Some(409), Some("signing_unsupported"))
        );
        let withdraw = BrokerRequest::post("/sapi/v1/capital/withdraw/apply")
            .form("coin", "BTC")
            .form("address", "bc1q-attacker")
            .form("amount", "10");
        let error = client.sign(42, "binance", &withdraw).unwrap_err();
        assert_eq!(
            (error.status(), error.code()),
            (Some(403), Some("signing_path_refused"))
        );
    }
}
