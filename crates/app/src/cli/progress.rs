//! What the commands that go through every row (`keys rotate`, `keys verify`, `cutover close`)
//! print: a progress line on stderr, and the ids of the rows that failed.

use std::io::{IsTerminal, Write};

use user_service_domain::ports::CredentialRepository;
use user_service_domain::rotation::Progress;

use super::context::CommandError;

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
pub(super) async fn total_rows(store: &dyn CredentialRepository) -> Result<u64, CommandError> {
    Ok(store
        .count_by_key_id()
        .await
        .map_err(|e| CommandError(user_service_domain::chain(&e)))?
        .iter()
        .map(|(_, n)| n)
        .sum())
}

/// Ends a progress line redrawn in place, so that what follows starts on a line of its own.
pub(super) fn end_progress_line() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

/// The first 50 row ids, then how many more there are.
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
