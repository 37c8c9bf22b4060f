//! The connection test against the stand-ins, with every log line captured: the status it
//! reports, the single WARN line of a failed check, and no key, secret or signature anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

use log::{Level, LevelFilter, Log, Metadata, Record};
use support::*;
use user_service_brokers::stand_in::{AlpacaStandIn, BinanceStandIn, KrakenStandIn, Outcome};
use user_service_brokers::{HttpBrokerProbe, ProbeUrls};
use user_service_domain::ports::ProbeStatus;
use user_service_domain::PlainSecret;

/// Every log line of the process, with the thread that wrote it.
struct CapturingLogger {
    lines: Mutex<Vec<(ThreadId, Level, String)>>,
}

impl Log for CapturingLogger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        self.lines
            .lock()
            .unwrap()
            .push((std::thread::current().id(), record.level(), line));
    }

    fn flush(&self) {}
}

fn logger() -> &'static CapturingLogger {
    static LOGGER: OnceLock<&'static CapturingLogger> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let logger: &'static CapturingLogger = Box::leak(Box::new(CapturingLogger {
            lines: Mutex::new(Vec::new()),
        }));
        log::set_logger(logger).unwrap();
        // DEBUG is the most a production service enables for its HTTP client: ureq writes the
        // request path and query at TRACE (see the README).
        log::set_max_level(LevelFilter::Debug);
        logger
    })
}

/// Log lines this thread writes while `f` runs.
fn logged_by<T>(f: impl FnOnce() -> T) -> (T, Vec<(Level, String)>) {
    let logger = logger();
    let start = logger.lines.lock().unwrap().len();
    let result = f();
    let me = std::thread::current().id();
    let lines = logger.lines.lock().unwrap()[start..]
        .iter()
        .filter(|(thread, _, _)| *thread == me)
        .map(|(_, level, line)| (*level, line.clone()))
        .collect();
    (result, lines)
}

fn warnings(lines: &[(Level, String)]) -> Vec<String> {
    lines
        .iter()
        .filter(|(level, _)| *level <= Level::Warn)
        .map(|(_, line)| line.clone())
        .collect()
}

struct StandIns {
    binance: BinanceStandIn,
    kraken: KrakenStandIn,
    alpaca: AlpacaStandIn,
}

fn stand_ins() -> StandIns {
    StandIns {
        binance: BinanceStandIn::start([(BINANCE_KEY, BINANCE_SECRET)]).unwrap(),
        kraken: KrakenStandIn::start([(KRAKEN_KEY, KRAKEN_SECRET)]).unwrap(),
        alpaca: AlpacaStandIn::start([(ALPACA_KEY, ALPACA_SECRET)]).unwrap(),
    }
}

fn probe_of(stand_ins: &StandIns) -> HttpBrokerProbe {
    HttpBrokerProbe::new(
        ProbeUrls {
            binance: stand_ins.binance.url(),
            kraken: stand_ins.kraken.url(),
            alpaca: format!("{}/", stand_ins.alpaca.url()),
        },
        Duration::from_secs(10),
    )
}

fn probe_at(url: &str, timeout: Duration) -> HttpBrokerProbe {
    HttpBrokerProbe::new(
        ProbeUrls {
            binance: url.to_owned(),
            kraken: url.to_owned(),
            alpaca: url.to_owned(),
        },
        timeout,
    )
}

fn check(
    probe: &HttpBrokerProbe,
    broker_name: &str,
    key: &str,
    secret: &str,
) -> (ProbeStatus, Vec<(Level, String)>) {
    logged_by(|| {
        probe.check(
            &broker(broker_name),
            &PlainSecret::new(key),
            &PlainSecret::new(secret),
        )
    })
}

const ALL_SECRETS: [&str; 6] = [
    BINANCE_KEY,
    BINANCE_SECRET,
    KRAKEN_KEY,
    KRAKEN_SECRET,
    ALPACA_KEY,
    ALPACA_SECRET,
];

/// No key or secret, and nothing that looks like a signature: a `signature=` parameter, a run
/// of 40 hex digits (Binance) or of 60 base64 characters (Kraken).
fn assert_no_secret(text: &str) {
    for secret in ALL_SECRETS {
        assert!(!text.contains(secret), "secret in {text:?}");
    }
    assert!(!text.contains("signature="), "signature in {text:?}");
    let longest_run = |allowed: fn(char) -> bool| {
        text.split(|c: char| !allowed(c))
            .map(str::len)
            .max()
            .unwrap_or(0)
    };
    assert!(longest_run(|c| c.is_ascii_hexdigit()) < 40, "{text:?}");
    assert!(
        longest_run(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')) < 60,
        "{text:?}"
    );
}

fn assert_lines_clean(lines: &[(Level, String)]) {
    for (_, line) in lines {
        assert_no_secret(line);
    }
}

#[test]
fn accepted_credentials_are_ok_and_log_no_warning() {
    let stand_ins = stand_ins();
    let probe = probe_of(&stand_ins);
    for (name, key, secret) in [
        ("binance", BINANCE_KEY, BINANCE_SECRET),
        ("kraken", KRAKEN_KEY, KRAKEN_SECRET),
        ("alpaca", ALPACA_KEY, ALPACA_SECRET),
    ] {
        let (status, lines) = check(&probe, name, key, secret);
        assert_eq!(status, ProbeStatus::Ok, "{name}: {lines:?}");
        assert!(warnings(&lines).is_empty(), "{lines:?}");
        assert_lines_clean(&lines);
    }
    let calls = |requests: Vec<user_service_brokers::stand_in::Recorded>| {
        requests
            .into_iter()
            .map(|r| (r.method, r.path, r.outcome))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        calls(stand_ins.binance.requests()),
        [("GET".into(), "/api/v3/account".into(), Outcome::Accepted)]
    );
    assert_eq!(
        calls(stand_ins.kraken.requests()),
        [(
            "POST".into(),
            "/0/private/Balance".into(),
            Outcome::Accepted
        )]
    );
    assert_eq!(
        calls(stand_ins.alpaca.requests()),
        [("GET".into(), "/v2/account".into(), Outcome::Accepted)]
    );
}

#[test]
fn repeated_kraken_checks_use_fresh_nonces() {
    let stand_ins = stand_ins();
    let probe = probe_of(&stand_ins);
    for _ in 0..5 {
        assert_eq!(
            check(&probe, "kraken", KRAKEN_KEY, KRAKEN_SECRET).0,
            ProbeStatus::Ok
        );
    }
}

#[test]
fn rejected_credentials_are_unauthorized_with_one_warning() {
    let stand_ins = stand_ins();
    let probe = probe_of(&stand_ins);
    let binance_host = stand_ins.binance.url().replace("http://", "");
    let kraken_host = stand_ins.kraken.url().replace("http://", "");
    let alpaca_host = stand_ins.alpaca.url().replace("http://", "");
    let cases = [
        (
            "binance",
            BINANCE_KEY,
            "wrong-secret",
            &binance_host,
            "HTTP 400, Binance code -1022",
        ),
        (
            "binance",
            "unknown-key",
            BINANCE_SECRET,
            &binance_host,
            "HTTP 401, Binance code -2015",
        ),
        (
            "kraken",
            KRAKEN_KEY,
            "b3RoZXIgc2VjcmV0",
            &kraken_host,
            "Kraken error EAPI:Invalid signature",
        ),
        (
            "kraken",
            "unknown-key",
            KRAKEN_SECRET,
            &kraken_host,
            "Kraken error EAPI:Invalid key",
        ),
        (
            "alpaca",
            ALPACA_KEY,
            "wrong-secret",
            &alpaca_host,
            "HTTP 401",
        ),
        (
            "alpaca",
            "unknown-key",
            ALPACA_SECRET,
            &alpaca_host,
            "HTTP 401",
        ),
    ];
    for (name, key, secret, host, cause) in cases {
        let (status, lines) = check(&probe, name, key, secret);
        assert_eq!(status, ProbeStatus::Unauthorized, "{name}: {lines:?}");
        let warnings = warnings(&lines);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(
            warnings[0],
            format!(
                "WARN user_service_brokers::probe: broker credential check failed: \
                 broker={name} host={host} status=unauthorized cause={cause}"
            )
        );
        assert_lines_clean(&lines);
        assert!(!warnings[0].contains(secret) && !warnings[0].contains(key));
    }
}

#[test]
fn a_kraken_secret_that_is_not_base64_is_unauthorized_without_a_call() {
    let stand_ins = stand_ins();
    let probe = probe_of(&stand_ins);
    let (status, lines) = check(&probe, "kraken", KRAKEN_KEY, "not base64!");
    assert_eq!(status, ProbeStatus::Unauthorized);
    assert_eq!(warnings(&lines).len(), 1);
    assert!(warnings(&lines)[0].contains("not sent"));
    assert!(stand_ins.kraken.requests().is_empty());
}

#[test]
fn a_broker_outage_is_a_network_error() {
    let stand_ins = stand_ins();
    let probe = probe_of(&stand_ins);
    stand_ins.binance.set_outage(Some(503));
    stand_ins.kraken.set_outage(Some(502));
    stand_ins.alpaca.set_outage(Some(500));
    for (name, key, secret, cause) in [
        ("binance", BINANCE_KEY, BINANCE_SECRET, "cause=HTTP 503"),
        ("kraken", KRAKEN_KEY, KRAKEN_SECRET, "cause=HTTP 502"),
        ("alpaca", ALPACA_KEY, ALPACA_SECRET, "cause=HTTP 500"),
    ] {
        let (status, lines) = check(&probe, name, key, secret);
        assert_eq!(status, ProbeStatus::NetworkError, "{name}");
        let warnings = warnings(&lines);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].ends_with(cause), "{warnings:?}");
        assert!(warnings[0].contains("status=network_error"));
        assert_lines_clean(&lines);
    }
}

#[test]
fn a_closed_port_is_a_network_error() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let probe = probe_at(&format!("http://{closed}"), Duration::from_secs(10));
    for name in ["binance", "kraken", "alpaca"] {
        let secret = if name == "kraken" {
            KRAKEN_SECRET
        } else {
            BINANCE_SECRET
        };
        let (status, lines) = check(&probe, name, BINANCE_KEY, secret);
        assert_eq!(status, ProbeStatus::NetworkError, "{name}");
        let warnings = warnings(&lines);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].ends_with(&format!(
                "host={closed} status=network_error cause=connection refused"
            )),
            "{warnings:?}"
        );
        assert_lines_clean(&lines);
    }
}

#[test]
fn a_broker_that_never_answers_is_a_network_error_after_the_timeout() {
    // Connections complete in the kernel's backlog, but nothing is ever read or answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let probe = probe_at(&format!("http://{addr}"), Duration::from_millis(300));
    let (status, lines) = check(&probe, "binance", BINANCE_KEY, BINANCE_SECRET);
    assert_eq!(status, ProbeStatus::NetworkError);
    let warnings = warnings(&lines);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("cause=timeout"), "{warnings:?}");
    assert_lines_clean(&lines);
    drop(silent);
}

#[test]
fn https_urls_speak_tls_in_the_default_build() {
    // A listener that reads what the probe sends: with TLS compiled in, a TLS handshake record
    // (0x16, version 3.x) arrives instead of an HTTP request line or no connection at all.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut first = [0u8; 3];
        stream.read_exact(&mut first).unwrap();
        first
    });
    let probe = probe_at(&format!("https://{addr}"), Duration::from_secs(10));
    let (status, lines) = check(&probe, "binance", BINANCE_KEY, BINANCE_SECRET);
    let first = reader.join().unwrap();
    assert_eq!(first[0], 0x16, "not a TLS handshake: {first:?}");
    assert_eq!(first[1], 0x03, "not a TLS handshake: {first:?}");
    assert_eq!(status, ProbeStatus::NetworkError);
    assert_eq!(warnings(&lines).len(), 1, "{lines:?}");
    assert_lines_clean(&lines);
}

#[test]
fn a_broker_without_adapter_is_a_network_error_with_one_warning() {
    let probe = probe_at("http://127.0.0.1:9", Duration::from_secs(1));
    let (status, lines) = check(&probe, "ibkr", "k", "s");
    assert_eq!(status, ProbeStatus::NetworkError);
    assert_eq!(
        warnings(&lines),
        [
            "WARN user_service_brokers::probe: broker credential check failed: broker=ibkr \
          host=- status=network_error cause=no automated check for this broker"
        ]
    );
}

#[test]
fn debug_output_holds_no_secret() {
    let stand_ins = stand_ins();
    let probe = probe_of(&stand_ins);
    let shown = format!(
        "{probe:?} {:?} {:?} {:?}",
        stand_ins.binance, stand_ins.kraken, stand_ins.alpaca
    );
    assert_no_secret(&shown);
    let signed = sign(
        "binance",
        &request(
            user_service_domain::HttpMethod::Get,
            "/api/v3/account",
            None,
            None,
        ),
        BINANCE_KEY,
        BINANCE_SECRET,
    );
    assert_no_secret(&format!("{signed:?}"));
}
