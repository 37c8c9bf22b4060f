//! Cut-over mode: whether rows without a binding tag are read.
//!
//! A row without a binding tag may be one the Python service wrote, or a ciphertext someone
//! moved into it and stripped of its tag: nothing in the row tells them apart. So unbound rows
//! are read only while the database is in *cut-over mode* (stored in the database, so every
//! replica agrees), which a database created by this service never is, and one upgraded from
//! the Python schema is until an operator closes it. A row whose tag does not match is never
//! read, whatever the mode.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::audit::{AuditAction, AuditEvent};
use crate::user::UserId;

/// What a row's binding tag says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingCheck {
    /// The tag matches the row's content under the key that wrote it.
    Bound,
    /// The row has no tag (written by the Python service, or stripped).
    Unbound,
    /// The tag is malformed, or does not match, or its key is not configured.
    Mismatch,
}

/// Whether unbound rows are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CutoverMode {
    /// Unbound rows are read (and bound on their next write or by `keys rotate`).
    Open,
    /// Only rows whose tag matches are read.
    Closed,
}

impl CutoverMode {
    /// Whether a row with this binding check may be read.
    pub fn admits(self, check: BindingCheck) -> bool {
        match check {
            BindingCheck::Bound => true,
            BindingCheck::Unbound => self == Self::Open,
            BindingCheck::Mismatch => false,
        }
    }

    /// `open` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

impl fmt::Display for CutoverMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stored cut-over mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutoverState {
    /// The mode the database is in.
    pub mode: CutoverMode,
    /// When it was last set; `None` when no mode is stored (the row deleted by hand), which
    /// reads as closed.
    pub changed_at: Option<DateTime<Utc>>,
}

/// Target of audit events about the whole database rather than one user (user ids start at 1).
pub const DATABASE_WIDE: UserId = UserId(0);

/// The audit action recording a change to `mode`.
pub fn audit_action(mode: CutoverMode) -> AuditAction {
    match mode {
        CutoverMode::Open => AuditAction::CutoverOpen,
        CutoverMode::Closed => AuditAction::CutoverClose,
    }
}

/// Whether `event` records a change of cut-over mode.
pub fn is_mode_change(event: &AuditEvent) -> bool {
    matches!(
        event.action,
        AuditAction::CutoverOpen | AuditAction::CutoverClose
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_open_database_admits_unbound_rows_and_nothing_admits_a_mismatch() {
        for mode in [CutoverMode::Open, CutoverMode::Closed] {
            assert!(mode.admits(BindingCheck::Bound));
            assert!(!mode.admits(BindingCheck::Mismatch));
        }
        assert!(CutoverMode::Open.admits(BindingCheck::Unbound));
        assert!(!CutoverMode::Closed.admits(BindingCheck::Unbound));
    }
}
