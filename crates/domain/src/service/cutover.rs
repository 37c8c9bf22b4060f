//! Cut-over mode's use cases: the gate that decides which mode applies to a read (the stored
//! mode, read only when an unbound row is met, unless configuration forces it closed), and
//! closing cut-over once every row is verified. The mode itself is in [`crate::cutover`].

use std::fmt;
use std::sync::Arc;

use log::warn;

use crate::cutover::{BindingCheck, CutoverMode};
use crate::error::{chain, DomainError};
use crate::ports::{CredentialCipher, CredentialRepository, CutoverRepository, ModeChange};
use crate::rotation::{self, Progress, VerifyReport};

/// Decides which mode applies to a read: the stored one, unless the operator forced the closed
/// behaviour (`BROKER_CREDENTIALS_REQUIRE_BINDING`). The stored mode is read only when a row
/// without a tag is met, so a database whose rows are all bound pays nothing for it.
#[derive(Clone)]
pub struct CutoverGate {
    stored: Option<Arc<dyn CutoverRepository>>,
    forced_closed: bool,
}

impl fmt::Debug for CutoverGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CutoverGate")
            .field("stored", &self.stored.is_some())
            .field("forced_closed", &self.forced_closed)
            .finish()
    }
}

impl Default for CutoverGate {
    fn default() -> Self {
        Self::closed()
    }
}

impl CutoverGate {
    /// Always closed: no unbound row is ever read.
    pub fn closed() -> Self {
        Self {
            stored: None,
            forced_closed: true,
        }
    }

    /// The mode stored in the database, or closed whatever it says when `forced_closed`.
    pub fn stored(repository: Arc<dyn CutoverRepository>, forced_closed: bool) -> Self {
        Self {
            stored: Some(repository),
            forced_closed,
        }
    }

    /// Whether the closed behaviour is forced by configuration.
    pub fn forced_closed(&self) -> bool {
        self.forced_closed || self.stored.is_none()
    }

    /// The mode that applies now. When the stored mode cannot be read, closed: an unbound row
    /// then reads as undecryptable until the database answers, never the other way round.
    pub async fn mode(&self) -> CutoverMode {
        let Some(stored) = self.stored.as_ref().filter(|_| !self.forced_closed) else {
            return CutoverMode::Closed;
        };
        match stored.state().await {
            Ok(state) => state.mode,
            Err(error) => {
                warn!(
                    "cut-over mode unreadable, unbound rows refused meanwhile: {}",
                    chain(&error)
                );
                CutoverMode::Closed
            }
        }
    }
}

/// The mode that applies to a set of rows, read at most once, and only if one is unbound.
pub(crate) struct LazyMode<'g> {
    gate: &'g CutoverGate,
    mode: Option<CutoverMode>,
}

impl<'g> LazyMode<'g> {
    pub(crate) fn new(gate: &'g CutoverGate) -> Self {
        Self { gate, mode: None }
    }

    /// Whether a row with this check may be read.
    pub(crate) async fn admits(&mut self, check: BindingCheck) -> bool {
        match check {
            BindingCheck::Bound => true,
            BindingCheck::Mismatch => false,
            BindingCheck::Unbound => {
                if self.mode.is_none() {
                    self.mode = Some(self.gate.mode().await);
                }
                self.mode == Some(CutoverMode::Open)
            }
        }
    }

    /// The mode, if it was needed and read.
    pub(crate) fn known(&self) -> Option<CutoverMode> {
        self.mode
    }

    /// Fixes the mode (read elsewhere).
    pub(crate) fn set(&mut self, mode: CutoverMode) {
        self.mode = Some(mode);
    }
}

/// What `cutover close` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The database is now closed.
    Closed,
    /// It already was.
    AlreadyClosed,
    /// Nothing changed: these rows are unbound or fail verification (ids, never values).
    Refused(VerifyReport),
    /// Nothing changed: a row without a tag appeared after the verification (a writer other
    /// than this service is still at work).
    RefusedUnbound(u64),
}

/// Closes cut-over mode: verifies every row as a closed database would read it (all must
/// decrypt and carry a matching tag), then closes, the store checking again, in the same
/// transaction, that no unbound row appeared meanwhile.
pub async fn close(
    cipher: &dyn CredentialCipher,
    credentials: &dyn CredentialRepository,
    cutover: &dyn CutoverRepository,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<CloseOutcome, DomainError> {
    let report = rotation::verify(cipher, credentials, CutoverMode::Closed, progress).await?;
    if !report.failed.is_empty() {
        return Ok(CloseOutcome::Refused(report));
    }
    Ok(match cutover.set_mode(CutoverMode::Closed).await? {
        ModeChange::Changed => CloseOutcome::Closed,
        ModeChange::Unchanged => CloseOutcome::AlreadyClosed,
        ModeChange::RefusedUnbound(count) => CloseOutcome::RefusedUnbound(count),
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::cutover::CutoverState;
    use crate::error::RepositoryError;
    use crate::ports::MockCutoverRepository;

    fn stored(mode: Result<CutoverMode, ()>) -> Arc<dyn CutoverRepository> {
        let mut repo = MockCutoverRepository::new();
        repo.expect_state().returning(move || match mode {
            Ok(mode) => Ok(CutoverState {
                mode,
                changed_at: Some(Utc::now()),
            }),
            Err(()) => Err(RepositoryError::unavailable("read cut-over mode", "down")),
        });
        Arc::new(repo)
    }

    #[tokio::test]
    async fn the_gate_reads_the_stored_mode_unless_forced_or_unreadable() {
        let open = CutoverGate::stored(stored(Ok(CutoverMode::Open)), false);
        assert_eq!(open.mode().await, CutoverMode::Open);
        let forced = CutoverGate::stored(stored(Ok(CutoverMode::Open)), true);
        assert_eq!(forced.mode().await, CutoverMode::Closed);
        let down = CutoverGate::stored(stored(Err(())), false);
        assert_eq!(down.mode().await, CutoverMode::Closed);
        assert_eq!(CutoverGate::default().mode().await, CutoverMode::Closed);
    }

    #[tokio::test]
    async fn the_stored_mode_is_read_only_for_an_unbound_row_and_once() {
        let mut repo = MockCutoverRepository::new();
        repo.expect_state().times(1).returning(|| {
            Ok(CutoverState {
                mode: CutoverMode::Open,
                changed_at: Some(Utc::now()),
            })
        });
        let gate = CutoverGate::stored(Arc::new(repo), false);
        let mut lazy = LazyMode::new(&gate);
        assert!(lazy.admits(BindingCheck::Bound).await);
        assert!(!lazy.admits(BindingCheck::Mismatch).await);
        assert_eq!(lazy.known(), None);
        assert!(lazy.admits(BindingCheck::Unbound).await);
        assert!(lazy.admits(BindingCheck::Unbound).await);
        assert_eq!(lazy.known(), Some(CutoverMode::Open));
    }
}
