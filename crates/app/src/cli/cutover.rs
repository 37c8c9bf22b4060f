//! `user-service cutover status|close|open`: the cut-over mode of the database.

use std::io::Write;

use user_service_domain::ports::ModeChange;
use user_service_domain::service::cutover::{self, CloseOutcome};
use user_service_domain::{chain, CutoverMode};

use super::args::CutoverCommand;
use super::context::{CommandError, Context};
use super::progress::{end_progress_line, ids, progress_bar, total_rows};

/// Runs a `cutover` command.
pub(super) async fn run(
    context: &mut Context<'_>,
    command: CutoverCommand,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    match command {
        CutoverCommand::Status => status(context, out).await,
        CutoverCommand::Close => close(context, out).await,
        CutoverCommand::Open => open(context, out).await,
    }
}

fn storage(error: &user_service_domain::RepositoryError) -> CommandError {
    CommandError(chain(error))
}

async fn status(context: &mut Context<'_>, out: &mut dyn Write) -> Result<(), CommandError> {
    let services = context.services().await?;
    let stored = services
        .cutover_store
        .state()
        .await
        .map_err(|e| storage(&e))?;
    let unbound = services
        .cutover_store
        .unbound_rows()
        .await
        .map_err(|e| storage(&e))?;
    let since = stored
        .changed_at
        .map_or_else(|| "no mode stored".to_owned(), |at| at.to_rfc3339());
    writeln!(
        out,
        "cut-over mode stored in the database: {} ({since})",
        stored.mode
    )?;
    if services.cutover.forced_closed() && stored.mode == CutoverMode::Open {
        writeln!(
            out,
            "applied by this configuration: closed (BROKER_CREDENTIALS_REQUIRE_BINDING is on)"
        )?;
    }
    writeln!(out, "rows without a binding tag: {unbound}")?;
    match (stored.mode, unbound) {
        (CutoverMode::Open, 0) => writeln!(
            out,
            "every row is bound: `user-service cutover close` can close it"
        )?,
        (CutoverMode::Open, _) => writeln!(
            out,
            "bind them with `user-service keys rotate`, then `user-service cutover close`"
        )?,
        (CutoverMode::Closed, 0) => {}
        (CutoverMode::Closed, _) => writeln!(
            out,
            "these rows read as undecryptable: rows a writer other than this service put there"
        )?,
    }
    Ok(())
}

async fn close(context: &mut Context<'_>, out: &mut dyn Write) -> Result<(), CommandError> {
    let ring = context.secrets().ring().map_err(CommandError)?;
    let services = context.services().await?;
    let total = total_rows(services.credential_store.as_ref()).await?;
    let outcome = cutover::close(
        ring.as_ref(),
        services.credential_store.as_ref(),
        services.cutover_store.as_ref(),
        &mut progress_bar("verified", total),
    )
    .await?;
    end_progress_line();
    match outcome {
        CloseOutcome::Closed => {
            writeln!(
                out,
                "cut-over closed: {total} row(s) verified, all bound; a row without a binding tag now reads as undecryptable"
            )?;
            Ok(())
        }
        CloseOutcome::AlreadyClosed => {
            writeln!(out, "cut-over was already closed ({total} row(s) verified)")?;
            Ok(())
        }
        CloseOutcome::Refused(report) => Err(CommandError(format!(
            "cut-over stays open: {} row(s) are unbound or fail verification (ids {}); bind them with `user-service keys rotate` (it names the rows it cannot read)",
            report.failed.len(),
            ids(&report.failed)
        ))),
        CloseOutcome::RefusedUnbound(count) => Err(CommandError(format!(
            "cut-over stays open: {count} row(s) without a binding tag were written during the check; stop the other writer, run `user-service keys rotate`, then close again"
        ))),
    }
}

async fn open(context: &mut Context<'_>, out: &mut dyn Write) -> Result<(), CommandError> {
    let services = context.services().await?;
    let change = services
        .cutover_store
        .set_mode(CutoverMode::Open)
        .await
        .map_err(|e| storage(&e))?;
    match change {
        ModeChange::Unchanged => writeln!(out, "cut-over was already open")?,
        _ => writeln!(
            out,
            "cut-over opened (audited): rows without a binding tag are read again; close it with `user-service cutover close` once the other writer has stopped"
        )?,
    }
    if services.cutover.forced_closed() {
        writeln!(
            out,
            "note: BROKER_CREDENTIALS_REQUIRE_BINDING is on in this configuration; replicas with it keep reading only bound rows"
        )?;
    }
    Ok(())
}
