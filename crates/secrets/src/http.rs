//! What the HTTP providers share: the agent, address checks and one GET.

use std::io::Read;
use std::time::Duration;

use user_service_domain::ports::SecretSourceError;
use zeroize::Zeroizing;

/// Largest response body read; a secret answer is a few hundred bytes.
const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// The agent of every outgoing call: every status an answer, no redirect (it must not carry
/// the token elsewhere), one deadline for the whole call.
pub(crate) use user_service_outbound::agent;

/// Checks a base address (`http://…` or, with the `tls` feature, `https://…`) and returns it
/// without trailing slashes. The `Err` is the reason.
pub(crate) fn base_url(address: &str, variable: &str) -> Result<String, String> {
    let address = address.trim().trim_end_matches('/');
    let lower = address.to_ascii_lowercase();
    if lower.starts_with("https://") {
        if cfg!(feature = "tls") {
            return Ok(address.to_owned());
        }
        return Err(format!(
            "{variable} is an https:// address but this build has no TLS; \
             build with the `tls` cargo feature"
        ));
    }
    if lower.starts_with("http://") && address.len() > "http://".len() {
        return Ok(address.to_owned());
    }
    Err(format!("{variable} must be an http:// or https:// address"))
}

/// An answer: the status and, for a 2xx status, the body (in a zeroizing buffer, since it
/// holds the secret).
pub(crate) struct Answer {
    pub status: u16,
    pub body: Zeroizing<Vec<u8>>,
}

/// Sends `request`; the `Err` is a reason that quotes neither the request nor the response.
pub(crate) fn send(
    request: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    timeout: Duration,
) -> Result<Answer, String> {
    let mut response = request.call().map_err(|e| describe(&e, timeout))?;
    let status = response.status().as_u16();
    let mut body = Zeroizing::new(Vec::new());
    if (200..300).contains(&status) {
        // Reserve up front so that small bodies are not copied around by reallocation.
        body.reserve(16 * 1024);
        response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .reader()
            .read_to_end(&mut body)
            .map_err(|e| describe_read(&e, timeout))?;
    }
    Ok(Answer { status, body })
}

fn describe(error: &ureq::Error, timeout: Duration) -> String {
    match error {
        ureq::Error::Timeout(_) => timed_out(timeout),
        ureq::Error::Io(io) => describe_io(io, timeout),
        ureq::Error::ConnectionFailed => "cannot connect".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        other => format!("request failed ({other})"),
    }
}

fn describe_read(error: &std::io::Error, timeout: Duration) -> String {
    match error.kind() {
        std::io::ErrorKind::TimedOut => timed_out(timeout),
        _ => "the response body could not be read (too large or cut short)".into(),
    }
}

fn describe_io(error: &std::io::Error, timeout: Duration) -> String {
    match error.kind() {
        std::io::ErrorKind::TimedOut => timed_out(timeout),
        kind => format!("cannot connect ({kind})"),
    }
}

fn timed_out(timeout: Duration) -> String {
    format!(
        "no answer within {} ms (SECRET_MANAGER_TIMEOUT_SECONDS)",
        timeout.as_millis()
    )
}

/// An error of `provider` about `key`.
pub(crate) fn error(provider: &str, key: &str, reason: String) -> SecretSourceError {
    SecretSourceError {
        provider: provider.into(),
        key: key.into(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_accepts_http_and_drops_trailing_slashes() {
        assert_eq!(
            base_url(" http://vault:8200// ", "VAULT_ADDR").as_deref(),
            Ok("http://vault:8200")
        );
        assert!(base_url("vault:8200", "VAULT_ADDR").is_err());
        assert!(base_url("http://", "VAULT_ADDR").is_err());
    }

    #[test]
    fn base_url_accepts_https_only_with_tls() {
        let answer = base_url("https://vault.example", "VAULT_ADDR");
        if cfg!(feature = "tls") {
            assert_eq!(answer.as_deref(), Ok("https://vault.example"));
        } else {
            assert!(answer.is_err_and(|reason| reason.contains("`tls` cargo feature")));
        }
    }
}
