//! `user-service keys generate`, `keys rotate` and `keys verify`.

use std::io::{IsTerminal, Write};

use secrecy::ExposeSecret;
use user_service_crypto::KeyRing;
use user_service_domain::rotation::{self, Progress};
use user_service_domain::{CutoverMode, KeyId};

use super::{CommandError, Context, KeysCommand};

/// Runs a `keys` command.
pub(super) async fn run(
    context: &mut Context<'_>,
    command: KeysCommand,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    match command {
        KeysCommand::Generate => {
            writeln!(out, "{}", KeyRing::generate_key().expose_secret())?;
            Ok(())
        }
        KeysCommand::Rotate { after_id } => rotate(context, after_id, out).await,
        KeysCommand::Verify => verify(context, out).await,
    }
}

/// Progress on stderr: a line redrawn in place on a terminal, nothing otherwise.
/// Seconds between two progress lines when stderr is not a terminal (a Kubernetes Job's log).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Progress on stderr: a line redrawn in place on a terminal; otherwise a line every
/// [`PROGRESS_EVERY`] at most (rows done, rate, time left), so that a log shows it too.
pub(super) fn progress_bar(verb: &'static str, total: u64) -> impl FnMut(Progress) + Send {
    let terminal = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut last_line: Option<std::time::Instant> = None;
    move |progress: Progress| {
        let line = progress_line(verb, progress.seen, total, started.elapsed());
        let mut err = std::io::stderr().lock();
        if terminal {
            let _ = write!(err, "\r{line}");
            let _ = err.flush();
        } else if last_line.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
            last_line = Some(std::time::Instant::now());
            let _ = writeln!(err, "{line}");
        }
    }
}

/// `looked at 1200 of 5000 rows (600 rows/s, about 7 s left)`.
fn progress_line(verb: &str, seen: u64, total: u64, elapsed: std::time::Duration) -> String {
    let rate = seen as f64 / elapsed.as_secs_f64().max(1e-3);
    let left = total.saturating_sub(seen) as f64 / rate.max(1e-9);
    format!("{verb} {seen} of {total} rows ({rate:.0} rows/s, about {left:.0} s left)")
}

/// Rows in the table, for the progress lines.
pub(super) async fn total_rows(
    store: &dyn user_service_domain::ports::CredentialRepository,
) -> Result<u64, CommandError> {
    Ok(store
        .count_by_key_id()
        .await
        .map_err(|e| CommandError(user_service_domain::chain(&e)))?
        .iter()
        .map(|(_, n)| n)
        .sum())
}

fn key_name(key: &Option<KeyId>, primary: &KeyId) -> String {
    match key {
        Some(id) if id == primary => format!("{id} (primary)"),
        Some(id) => id.to_string(),
        None => "none (written by the Python service)".to_owned(),
    }
}

pub(super) fn end_progress_line() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

/// Re-encrypts every row under the primary key; non-zero exit (naming ids) when a row failed.
async fn rotate(
    context: &mut Context<'_>,
    after_id: i64,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let ring = context.secrets().ring().map_err(CommandError)?;
    let services = context.services().await?;
    let store = services.credential_store.clone();
    let mode = services.cutover.mode().await;
    let started = std::time::Instant::now();
    let report = rotation::rotate(
        ring.as_ref(),
        store.as_ref(),
        mode,
        after_id,
        &mut progress_bar("looked at", total_rows(store.as_ref()).await?),
    )
    .await?;
    end_progress_line();
    let primary = ring.primary_key_id();
    let elapsed = started.elapsed().as_secs_f64();
    writeln!(
        out,
        "rotated {} rows to key {primary} in {elapsed:.1} s ({:.0} rows/s); {} already current",
        report.rotated(),
        report.rotated() as f64 / elapsed.max(1e-9),
        report.already_current
    )?;
    for (key, count) in &report.rotated_from {
        writeln!(out, "  from key {}: {count}", key_name(key, &primary))?;
    }
    if report.failed.is_empty() {
        return Ok(());
    }
    Err(CommandError(format!(
        "{} row(s) could not be rotated (undecryptable with the configured keys, failing their binding check{}, or kept changing): ids {}",
        report.failed.len(),
        if mode == CutoverMode::Closed {
            ", or unbound while cut-over is closed"
        } else {
            ""
        },
        ids(&report.failed)
    )))
}

/// Decrypts every row; reports counts per key id and failures, never a value.
async fn verify(context: &mut Context<'_>, out: &mut dyn Write) -> Result<(), CommandError> {
    let ring = context.secrets().ring().map_err(CommandError)?;
    let services = context.services().await?;
    let store = services.credential_store.clone();
    let mode = services.cutover.mode().await;
    let forced = services.cutover.forced_closed();
    let total = total_rows(store.as_ref()).await?;
    let report = rotation::verify(
        ring.as_ref(),
        store.as_ref(),
        mode,
        &mut progress_bar("verified", total),
    )
    .await?;
    end_progress_line();
    let primary = ring.primary_key_id();
    let configured: Vec<String> = ring.key_ids().iter().map(ToString::to_string).collect();
    writeln!(
        out,
        "configured keys: {} (primary {primary})",
        configured.join(", ")
    )?;
    for (key, count) in &report.rows_per_key {
        writeln!(out, "rows on key {}: {count}", key_name(key, &primary))?;
    }
    writeln!(
        out,
        "rows on keys no longer configured: {}",
        report.on_unconfigured_keys
    )?;
    writeln!(
        out,
        "cut-over mode: {}",
        super::cutover::describe(mode, forced)
    )?;
    writeln!(out, "rows without a binding tag: {}", report.unbound)?;
    writeln!(out, "failed rows: {}", report.failed.len())?;
    if report.failed.is_empty() {
        return Ok(());
    }
    Err(CommandError(format!(
        "{} row(s) cannot be decrypted or fail their binding check: ids {}",
        report.failed.len(),
        ids(&report.failed)
    )))
}

pub(super) fn ids(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(50).map(ToString::to_string).collect();
    if ids.len() > shown.len() {
        format!("{} … ({} more)", shown.join(", "), ids.len() - shown.len())
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_says_how_far_how_fast_and_how_long() {
        let line = progress_line("looked at", 1200, 5000, std::time::Duration::from_secs(2));
        assert_eq!(
            line,
            "looked at 1200 of 5000 rows (600 rows/s, about 6 s left)"
        );
    }
}
