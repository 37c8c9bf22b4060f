//! Broker connection tests (SPEC §4.4): a real signed, read-only call to each broker's account
//! endpoint, behind the domain's `BrokerProbe` port.
//!
//! | broker | call | credentials rejected when |
//! |---|---|---|
//! | `binance` | `GET /api/v3/account?timestamp=…&recvWindow=5000&signature=HMAC-SHA256(secret, query)`, header `X-MBX-APIKEY` | 401/403, or Binance codes -2014, -2015, -1022 |
//! | `kraken` | `POST /0/private/Balance`, headers `API-Key`, `API-Sign` = base64(HMAC-SHA512(base64-decoded secret, path ‖ SHA-256(nonce ‖ body))) | an `EAPI:Invalid key` / `EAPI:Invalid signature` / `EGeneral:Permission denied` error |
//! | `alpaca` | `GET /v2/account`, headers `APCA-API-KEY-ID`, `APCA-API-SECRET-KEY` | 401/403 |
//!
//! Anything else (timeout, connection refused, 5xx, unexpected body) is `network_error`. Base URLs
//! come from `BROKER_PROBE_BINANCE_URL`, `BROKER_PROBE_KRAKEN_URL`, `BROKER_PROBE_ALPACA_URL`.
//! This build speaks plain HTTP only unless compiled with the `tls` feature.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256, Sha512};
use user_service_domain::ports::{BrokerProbe, ProbeStatus};
use user_service_domain::{BrokerId, PlainSecret};

/// Base URLs of the brokers that have an adapter.
#[derive(Debug, Clone)]
pub struct ProbeUrls {
    /// Binance REST base URL.
    pub binance: String,
    /// Kraken REST base URL.
    pub kraken: String,
    /// Alpaca trading API base URL.
    pub alpaca: String,
}

/// Calls brokers over HTTP.
#[derive(Clone)]
pub struct HttpBrokerProbe {
    urls: ProbeUrls,
    agent: ureq::Agent,
}

impl std::fmt::Debug for HttpBrokerProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBrokerProbe")
            .field("urls", &self.urls)
            .finish()
    }
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl HttpBrokerProbe {
    /// A probe with these base URLs and a per-call timeout.
    pub fn new(urls: ProbeUrls, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self { urls, agent }
    }

    /// Whether `broker` has an adapter.
    pub fn supports(broker: &BrokerId) -> bool {
        matches!(broker.as_str(), "binance" | "kraken" | "alpaca")
    }

    fn binance(&self, key: &PlainSecret, secret: &PlainSecret) -> ProbeStatus {
        let query = format!("timestamp={}&recvWindow=5000", now_millis());
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else {
            return ProbeStatus::Unauthorized;
        };
        mac.update(query.as_bytes());
        let signature = hex(&mac.finalize().into_bytes());
        let url = format!(
            "{}/api/v3/account?{query}&signature={signature}",
            self.urls.binance.trim_end_matches('/')
        );
        let response = self
            .agent
            .get(&url)
            .header("X-MBX-APIKEY", key.expose_secret())
            .call();
        match response {
            Ok(mut response) => match response.status().as_u16() {
                200 => ProbeStatus::Ok,
                401 | 403 => ProbeStatus::Unauthorized,
                400 => {
                    let code = response
                        .body_mut()
                        .read_json::<serde_json::Value>()
                        .ok()
                        .and_then(|body| body["code"].as_i64());
                    match code {
                        Some(-2014 | -2015 | -1022) => ProbeStatus::Unauthorized,
                        _ => ProbeStatus::NetworkError,
                    }
                }
                _ => ProbeStatus::NetworkError,
            },
            Err(_) => ProbeStatus::NetworkError,
        }
    }

    fn kraken(&self, key: &PlainSecret, secret: &PlainSecret) -> ProbeStatus {
        let Ok(secret) =
            base64::engine::general_purpose::STANDARD.decode(secret.expose_secret().trim())
        else {
            // Kraken secrets are base64: anything else cannot be right.
            return ProbeStatus::Unauthorized;
        };
        let path = "/0/private/Balance";
        let nonce = now_millis().to_string();
        let body = format!("nonce={nonce}");
        let digest = Sha256::digest(format!("{nonce}{body}").as_bytes());
        let Ok(mut mac) = Hmac::<Sha512>::new_from_slice(&secret) else {
            return ProbeStatus::Unauthorized;
        };
        mac.update(path.as_bytes());
        mac.update(&digest);
        let signature =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let url = format!("{}{path}", self.urls.kraken.trim_end_matches('/'));
        let response = self
            .agent
            .post(&url)
            .header("API-Key", key.expose_secret())
            .header("API-Sign", &signature)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(body.as_bytes());
        let Ok(mut response) = response else {
            return ProbeStatus::NetworkError;
        };
        if response.status().as_u16() != 200 {
            return ProbeStatus::NetworkError;
        }
        let Ok(body) = response.body_mut().read_json::<serde_json::Value>() else {
            return ProbeStatus::NetworkError;
        };
        let errors: Vec<&str> = body["error"]
            .as_array()
            .map(|e| e.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        if errors.is_empty() {
            ProbeStatus::Ok
        } else if errors.iter().any(|e| {
            e.starts_with("EAPI:Invalid key")
                || e.starts_with("EAPI:Invalid signature")
                || e.starts_with("EGeneral:Permission denied")
        }) {
            ProbeStatus::Unauthorized
        } else {
            ProbeStatus::NetworkError
        }
    }

    fn alpaca(&self, key: &PlainSecret, secret: &PlainSecret) -> ProbeStatus {
        let url = format!("{}/v2/account", self.urls.alpaca.trim_end_matches('/'));
        match self
            .agent
            .get(&url)
            .header("APCA-API-KEY-ID", key.expose_secret())
            .header("APCA-API-SECRET-KEY", secret.expose_secret())
            .call()
        {
            Ok(response) => match response.status().as_u16() {
                200 => ProbeStatus::Ok,
                401 | 403 => ProbeStatus::Unauthorized,
                _ => ProbeStatus::NetworkError,
            },
            Err(_) => ProbeStatus::NetworkError,
        }
    }
}

impl HttpBrokerProbe {
    /// The blocking call to the broker.
    pub fn check(
        &self,
        broker: &BrokerId,
        api_key: &PlainSecret,
        api_secret: &PlainSecret,
    ) -> ProbeStatus {
        match broker.as_str() {
            "binance" => self.binance(api_key, api_secret),
            "kraken" => self.kraken(api_key, api_secret),
            "alpaca" => self.alpaca(api_key, api_secret),
            _ => ProbeStatus::NetworkError,
        }
    }
}

#[async_trait::async_trait]
impl BrokerProbe for HttpBrokerProbe {
    async fn probe(
        &self,
        broker: &BrokerId,
        api_key: &PlainSecret,
        api_secret: &PlainSecret,
    ) -> ProbeStatus {
        // The HTTP client is blocking: the call runs on the runtime's blocking threads.
        let probe = self.clone();
        let (broker, api_key, api_secret) = (broker.clone(), api_key.clone(), api_secret.clone());
        tokio::task::spawn_blocking(move || probe.check(&broker, &api_key, &api_secret))
            .await
            .unwrap_or(ProbeStatus::NetworkError)
    }
}

/// The French messages of the original service.
pub fn message(broker: &BrokerId, outcome: user_service_domain::TestOutcome) -> &'static str {
    use user_service_domain::TestOutcome;
    match outcome {
        TestOutcome::MissingKeys | TestOutcome::Probed(ProbeStatus::MissingCredentials) => {
            "Clés API manquantes pour ce broker."
        }
        TestOutcome::Probed(ProbeStatus::Ok) => "Connexion établie avec succès.",
        TestOutcome::Probed(ProbeStatus::Unauthorized) => {
            "Le broker a rejeté les identifiants fournis."
        }
        TestOutcome::Probed(_) if !HttpBrokerProbe::supports(broker) => {
            "Vérification automatique indisponible pour ce broker."
        }
        TestOutcome::Probed(_) => "Impossible de joindre le broker. Vérifiez l'URL ou réessayez.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A one-request HTTP server answering `status` and `body`; sends the request head back.
    fn broker_stub(status: u16, body: &'static str) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body_in = vec![0; length];
            reader.read_exact(&mut body_in).unwrap();
            head.push_str(&String::from_utf8_lossy(&body_in));
            let _ = tx.send(head);
            let mut stream = stream;
            write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        });
        (url, rx)
    }

    fn probe_at(url: &str) -> HttpBrokerProbe {
        HttpBrokerProbe::new(
            ProbeUrls {
                binance: url.to_owned(),
                kraken: url.to_owned(),
                alpaca: url.to_owned(),
            },
            Duration::from_secs(5),
        )
    }

    fn broker(name: &str) -> BrokerId {
        BrokerId::parse(name).unwrap()
    }

    #[test]
    fn binance_call_is_signed_and_ok_is_ok() {
        let (url, head) = broker_stub(200, r#"{"balances":[]}"#);
        let status = probe_at(&url).check(
            &broker("binance"),
            &PlainSecret::new("KEY123"),
            &PlainSecret::new("SECRET"),
        );
        assert_eq!(status, ProbeStatus::Ok);
        let head = head.recv().unwrap();
        assert!(head.starts_with("GET /api/v3/account?timestamp="), "{head}");
        assert!(head.to_ascii_lowercase().contains("x-mbx-apikey: key123"));
        // Recompute the signature of the query that was sent.
        let first = head.lines().next().unwrap();
        let target = first.split(' ').nth(1).unwrap();
        let (query, signature) = target
            .split_once('?')
            .unwrap()
            .1
            .rsplit_once("&signature=")
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"SECRET").unwrap();
        mac.update(query.as_bytes());
        assert_eq!(signature, hex(&mac.finalize().into_bytes()));
    }

    #[test]
    fn binance_rejection_is_unauthorized() {
        let (url, _) = broker_stub(
            400,
            r#"{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}"#,
        );
        let status = probe_at(&url).check(
            &broker("binance"),
            &PlainSecret::new("k"),
            &PlainSecret::new("s"),
        );
        assert_eq!(status, ProbeStatus::Unauthorized);
        let (url, _) = broker_stub(401, "{}");
        assert_eq!(
            probe_at(&url).check(
                &broker("binance"),
                &PlainSecret::new("k"),
                &PlainSecret::new("s")
            ),
            ProbeStatus::Unauthorized
        );
    }

    #[test]
    fn unreachable_or_failing_broker_is_a_network_error() {
        let (url, _) = broker_stub(503, "{}");
        assert_eq!(
            probe_at(&url).check(
                &broker("binance"),
                &PlainSecret::new("k"),
                &PlainSecret::new("s")
            ),
            ProbeStatus::NetworkError
        );
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let probe = probe_at(&format!("http://{closed}"));
        assert_eq!(
            probe.check(
                &broker("alpaca"),
                &PlainSecret::new("k"),
                &PlainSecret::new("s")
            ),
            ProbeStatus::NetworkError
        );
    }

    #[test]
    fn kraken_errors_are_read_from_the_body() {
        let secret = base64::engine::general_purpose::STANDARD.encode(b"kraken-secret");
        let (url, head) = broker_stub(200, r#"{"error":["EAPI:Invalid key"]}"#);
        let status = probe_at(&url).check(
            &broker("kraken"),
            &PlainSecret::new("k"),
            &PlainSecret::new(secret.clone()),
        );
        assert_eq!(status, ProbeStatus::Unauthorized);
        assert!(head
            .recv()
            .unwrap()
            .to_ascii_lowercase()
            .contains("api-sign: "));
        let (url, _) = broker_stub(200, r#"{"error":[],"result":{"ZEUR":"1.0"}}"#);
        let status = probe_at(&url).check(
            &broker("kraken"),
            &PlainSecret::new("k"),
            &PlainSecret::new(secret),
        );
        assert_eq!(status, ProbeStatus::Ok);
    }

    #[test]
    fn alpaca_uses_key_headers() {
        let (url, head) = broker_stub(403, "{}");
        let status = probe_at(&url).check(
            &broker("alpaca"),
            &PlainSecret::new("AK"),
            &PlainSecret::new("SK"),
        );
        assert_eq!(status, ProbeStatus::Unauthorized);
        let head = head.recv().unwrap().to_ascii_lowercase();
        assert!(head.contains("apca-api-key-id: ak") && head.contains("apca-api-secret-key: sk"));
    }

    #[test]
    fn brokers_without_adapter_say_so() {
        use user_service_domain::TestOutcome;
        let outcome = TestOutcome::Probed(ProbeStatus::NetworkError);
        assert_eq!(
            message(&broker("ibkr"), outcome),
            "Vérification automatique indisponible pour ce broker."
        );
        assert_eq!(
            message(&broker("binance"), outcome),
            "Impossible de joindre le broker. Vérifiez l'URL ou réessayez."
        );
    }
}
