//! Logging: `env_logger`, `RUST_LOG` (default `info`), `LOG_FORMAT=text|json`.
//!
//! Whatever `RUST_LOG` says, the libraries that see requests on the wire are capped: their debug
//! and trace output dumps request lines, headers and bodies (an HTTP client's hex dump of a
//! broker call holds the API key and secret, a secret manager's answer holds the key ring), so
//! it never reaches the log. The caps are checked before `RUST_LOG`'s own filters and cannot be
//! lifted by a more specific directive.

use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::LogFormat;

/// Targets (and their sub-modules) that see protocol traffic, and the most verbose level they
/// may log at.
pub const CAPPED_TARGETS: &[(&str, Level)] = &[
    ("ureq", Level::Info),
    ("ureq_proto", Level::Warn),
    ("rustls", Level::Warn),
    ("tokio_postgres", Level::Info),
    ("postgres_protocol", Level::Warn),
    ("actix_http", Level::Info),
    ("h2", Level::Warn),
    ("hyper", Level::Warn),
    ("mio", Level::Warn),
];

/// Most verbose level any other library may log at (this program's own modules are not capped).
pub const OTHER_LIBRARIES_CAP: Level = Level::Info;

/// The cap of `target`, if any.
pub fn cap_of(target: &str) -> Option<Level> {
    let root = target.split("::").next().unwrap_or(target);
    if let Some((_, level)) = CAPPED_TARGETS.iter().find(|(name, _)| *name == root) {
        return Some(*level);
    }
    let ours = root.starts_with("user_service") || matches!(root, "access" | "signin" | "audit");
    (!ours).then_some(OTHER_LIBRARIES_CAP)
}

/// The configured logger behind the caps.
struct Capped {
    inner: env_logger::Logger,
}

impl Log for Capped {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        cap_of(metadata.target()).is_none_or(|cap| metadata.level() <= cap)
            && self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs the logger once; later calls do nothing.
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let line = serde_json::json!({
                "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "level": record.level().as_str(),
                "target": record.target(),
                "message": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        });
    }
    let inner = builder.build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(Capped { inner })).is_ok() {
        log::set_max_level(max.max(LevelFilter::Error));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_libraries_are_capped_whatever_the_module() {
        assert_eq!(cap_of("ureq_proto::util"), Some(Level::Warn));
        assert_eq!(cap_of("ureq::unversioned::transport"), Some(Level::Info));
        assert_eq!(cap_of("tokio_postgres::prepare"), Some(Level::Info));
        assert_eq!(cap_of("some_crate::module"), Some(OTHER_LIBRARIES_CAP));
        assert_eq!(cap_of("user_service::http::middleware"), None);
        assert_eq!(cap_of("user_service_brokers::probe"), None);
        assert_eq!(cap_of("access"), None);
    }
}
