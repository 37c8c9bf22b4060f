//! `user-service keys rotate` and `keys verify`: the command-line side of SPEC §6.3.

use std::io::{IsTerminal, Write};

use user_service_domain::rotation::{self, Progress};
use user_service_domain::KeyId;

use crate::cli::CommandError;
use crate::keys::{load_key_ring, KeyStatus};
use crate::settings::Settings;
use crate::startup::{connect_for_command, Repositories};

fn ring(settings: &Settings) -> Result<std::sync::Arc<user_service_crypto::KeyRing>, CommandError> {
    let source = crate::secrets::source_for(&settings.secret_manager_provider)
        .map_err(|e| CommandError(format!("{}: {e}", crate::keys::MISCONFIGURED)))?;
    match load_key_ring(settings, source.as_ref()) {
        KeyStatus::Ready(ring) => Ok(ring),
        KeyStatus::Misconfigured(reason) => Err(CommandError(format!(
            "{}: {reason}",
            crate::keys::MISCONFIGURED
        ))),
    }
}

/// Progress on stderr: a line redrawn in place on a terminal, nothing otherwise.
fn progress_bar(verb: &'static str) -> impl FnMut(Progress) {
    let terminal = std::io::stderr().is_terminal();
    move |progress: Progress| {
        if terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r{verb} {} rows (last id {})",
                progress.seen, progress.last_id
            );
            let _ = err.flush();
        }
    }
}

fn key_name(key: &Option<KeyId>, primary: &KeyId) -> String {
    match key {
        Some(id) if id == primary => format!("{id} (primary)"),
        Some(id) => id.to_string(),
        None => "none (written by the Python service)".to_owned(),
    }
}

fn end_progress_line() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

/// Re-encrypts every row under the primary key; non-zero exit (naming ids) when a row failed.
pub fn rotate(settings: &Settings, after_id: i64, out: &mut dyn Write) -> Result<(), CommandError> {
    let ring = ring(settings)?;
    let database = connect_for_command(settings, settings.run_migrations())?;
    let repositories = Repositories::new(&database);
    let started = std::time::Instant::now();
    let report = rotation::rotate(
        ring.as_ref(),
        repositories.credentials.as_ref(),
        after_id,
        &mut progress_bar("looked at"),
    )
    .map_err(|e| CommandError(e.to_string()))?;
    end_progress_line();
    let primary = ring.primary_key_id();
    let io = |e: std::io::Error| CommandError(e.to_string());
    let elapsed = started.elapsed().as_secs_f64();
    writeln!(
        out,
        "rotated {} rows to key {primary} in {elapsed:.1} s ({:.0} rows/s); {} already current",
        report.rotated(),
        report.rotated() as f64 / elapsed.max(1e-9),
        report.already_current
    )
    .map_err(io)?;
    for (key, count) in &report.rotated_from {
        writeln!(out, "  from key {}: {count}", key_name(key, &primary)).map_err(io)?;
    }
    if report.failed.is_empty() {
        return Ok(());
    }
    Err(CommandError(format!(
        "{} row(s) could not be rotated (undecryptable with the configured keys, or kept changing): ids {}",
        report.failed.len(),
        ids(&report.failed)
    )))
}

/// Decrypts every row; reports counts per key id and failures, never a value.
pub fn verify(settings: &Settings, out: &mut dyn Write) -> Result<(), CommandError> {
    let ring = ring(settings)?;
    let database = connect_for_command(settings, settings.run_migrations())?;
    let repositories = Repositories::new(&database);
    let report = rotation::verify(
        ring.as_ref(),
        repositories.credentials.as_ref(),
        &mut progress_bar("verified"),
    )
    .map_err(|e| CommandError(e.to_string()))?;
    end_progress_line();
    let primary = ring.primary_key_id();
    let io = |e: std::io::Error| CommandError(e.to_string());
    let configured: Vec<String> = ring.key_ids().iter().map(ToString::to_string).collect();
    writeln!(
        out,
        "configured keys: {} (primary {primary})",
        configured.join(", ")
    )
    .map_err(io)?;
    for (key, count) in &report.rows_per_key {
        writeln!(out, "rows on key {}: {count}", key_name(key, &primary)).map_err(io)?;
    }
    writeln!(
        out,
        "rows on keys no longer configured: {}",
        report.on_unconfigured_keys
    )
    .map_err(io)?;
    writeln!(out, "failed rows: {}", report.failed.len()).map_err(io)?;
    if report.failed.is_empty() {
        return Ok(());
    }
    Err(CommandError(format!(
        "{} row(s) cannot be decrypted or fail their binding check: ids {}",
        report.failed.len(),
        ids(&report.failed)
    )))
}

fn ids(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(50).map(ToString::to_string).collect();
    if ids.len() > shown.len() {
        format!("{} … ({} more)", shown.join(", "), ids.len() - shown.len())
    } else {
        shown.join(", ")
    }
}
