//! Logging: `env_logger`, `RUST_LOG` (default `info`), `LOG_FORMAT=text|json`.

use std::io::Write;

use crate::settings::LogFormat;

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
    let _ = builder.try_init();
}
