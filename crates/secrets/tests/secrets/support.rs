//! Shared fixtures: the loopback HTTP server (the workspace's test stub), a secret value and a
//! token, and the check that printed text leaks neither.

#![allow(dead_code)] // each provider's tests use part of it, and a build may have no provider

use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use user_service_domain::ports::{SecretSource, SecretSourceError};
pub use user_service_test_support::stub::{closed_port_url, Stub as Server};

/// The secret the fake servers hold.
pub const SECRET_VALUE: &str = "kq7Zr2Lw9Xp4Vt6NbJ3m";
/// The token the clients present.
pub const TOKEN: &str = "hvs.Qm3Jx8Rb5Yc1Hd0FgW2s";

/// What `source` answers for `name`, exposed, after checking that it calls itself `provider`.
pub fn fetch_from(
    source: &dyn SecretSource,
    provider: &str,
    name: &str,
) -> Result<Option<String>, SecretSourceError> {
    assert_eq!(source.provider(), provider);
    source
        .fetch(name)
        .map(|secret| secret.map(|s| s.expose_secret().to_owned()))
}

/// `error`, checked to name `provider` and to leak neither the value nor the token.
pub fn checked_error(error: SecretSourceError, provider: &str) -> SecretSourceError {
    assert_eq!(error.provider, provider);
    assert_leaks_nothing(&error.to_string());
    assert_leaks_nothing(&format!("{error:?}"));
    error
}

/// Fetches from a server that answers only after 2 s, through `fetch_error` given that server and
/// a 200 ms timeout; checks that the fetch gave up in time, saying so, and returns the server.
pub fn fetch_from_a_stalling_server(
    fetch_error: impl FnOnce(&Server, Duration) -> SecretSourceError,
) -> Server {
    let server = Server::stalling(Duration::from_secs(2));
    let started = Instant::now();
    let error = fetch_error(&server, Duration::from_millis(200));
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    assert!(error.reason.contains("no answer within 200 ms"), "{error}");
    server
}

/// Fails when `printed` contains any 8-character window of `secret`.
pub fn assert_no_window_of(secret: &str, printed: &str) {
    let chars: Vec<char> = secret.chars().collect();
    for window in chars.windows(8) {
        let window: String = window.iter().collect();
        assert!(
            !printed.contains(&window),
            "{printed:?} contains {window:?} of a secret"
        );
    }
}

/// Fails when `printed` shows any part of [`SECRET_VALUE`] or [`TOKEN`].
pub fn assert_leaks_nothing(printed: &str) {
    assert_no_window_of(SECRET_VALUE, printed);
    assert_no_window_of(TOKEN, printed);
}
