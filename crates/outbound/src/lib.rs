#![doc = include_str!("../README.md")]

use std::time::Duration;

/// An agent whose every status is an answer, that follows no redirect and that gives up after
/// `timeout` for the whole call.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .build()
        .new_agent()
}

/// What went wrong below HTTP, without the URL; `peer` names the other side in the one case
/// where the URL itself is at fault (`invalid broker URL`).
pub fn transport_cause(error: &ureq::Error, peer: &str) -> String {
    match error {
        ureq::Error::Timeout(which) => format!("timeout ({which})"),
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".to_owned()
        }
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => "timeout".to_owned(),
        ureq::Error::Io(e) => format!("I/O error ({:?})", e.kind()),
        ureq::Error::HostNotFound => "host not found".to_owned(),
        ureq::Error::ConnectionFailed => "connection failed".to_owned(),
        ureq::Error::Tls(reason) => format!("TLS: {reason}"),
        #[cfg(feature = "tls")]
        ureq::Error::Rustls(e) => format!("TLS: {e}"),
        ureq::Error::Protocol(_) => "HTTP protocol error".to_owned(),
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => format!("invalid {peer} URL"),
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => {
            "unexpected redirect".to_owned()
        }
        ureq::Error::BodyExceedsLimit(_) => "answer too large".to_owned(),
        ureq::Error::RequireHttpsOnly(_) | ureq::Error::TlsRequired => "https required".to_owned(),
        _ => "HTTP client error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn a_refused_connection_is_named_without_the_url() {
        // A port just released: nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let url = format!("http://127.0.0.1:{port}/api/v3/order?signature=deadbeef");
        let error = match agent(Duration::from_secs(5)).get(&url).call() {
            Err(error) => error,
            Ok(_) => return, // something took the port meanwhile: nothing to check
        };
        let cause = transport_cause(&error, "broker");
        assert_eq!(cause, "connection refused");
        assert!(!cause.contains("deadbeef"));
    }

    #[test]
    fn a_malformed_url_names_the_peer() {
        let error = agent(Duration::from_secs(1))
            .get("http://exa mple/?signature=deadbeef")
            .call()
            .err();
        let cause = error.map(|e| transport_cause(&e, "user-service"));
        assert_eq!(cause.as_deref(), Some("invalid user-service URL"));
    }
}
