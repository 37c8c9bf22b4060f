//! `user-service keys generate`, `keys rotate` and `keys verify`.

use std::io::Write;

use secrecy::ExposeSecret;
use user_service_crypto::KeyRing;
use user_service_domain::rotation;
use user_service_domain::{CutoverMode, KeyId};

use super::args::KeysCommand;
use super::context::{CommandError, Context};
use super::progress::{end_progress_line, ids, progress_bar, total_rows};

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

fn key_name(key: &Option<KeyId>, primary: &KeyId) -> String {
    match key {
        Some(id) if id == primary => format!("{id} (primary)"),
        Some(id) => id.to_string(),
        None => "none (written by the Python service)".to_owned(),
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
    writeln!(out, "cut-over mode: {}", applied_mode(mode, forced))?;
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

/// `open`, `closed`, or `closed (forced by …)`: the cut-over mode this configuration applies.
fn applied_mode(mode: CutoverMode, forced: bool) -> String {
    if forced {
        format!("{mode} (forced by BROKER_CREDENTIALS_REQUIRE_BINDING)")
    } else {
        mode.to_string()
    }
}
