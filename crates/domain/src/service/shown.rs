//! What listing a row shows, kept between requests.
//!
//! Showing a row costs a binding check and a Fernet decryption per half: about 1.7 µs, most of
//! a list's own work beside the database (docs/performance.md). A row read again unchanged
//! shows the same, so the masks of a bound, readable row are kept and shown again without
//! decrypting or verifying anything, as long as:
//! - the row is equal, column for column, to the one they were computed from (a write, a
//!   rotation or a foreign change of any column makes it another row), and
//! - the keys are the same: the cipher's [`generation`](crate::ports::CredentialCipher::generation)
//!   is the one they were computed under (a reloaded key ring has a new one; a cipher without
//!   one keeps nothing).
//!
//! Only masks are kept, never a plaintext; rows that are unbound, fail their check or do not
//! decrypt are never kept, so each of their reads is decided, logged and audited anew. At most
//! [`ShownRows::CAPACITY`] rows are kept; past that the memory starts again empty.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::credential::StoredCredential;

/// The masks of a readable row's halves (`None`: the half is not stored).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Masks {
    pub(crate) key: Option<String>,
    pub(crate) secret: Option<String>,
}

impl fmt::Debug for Masks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Masks { .. }")
    }
}

/// Rows shown before, by row id.
#[derive(Default)]
pub(crate) struct ShownRows {
    entries: Mutex<HashMap<i64, Entry>>,
}

struct Entry {
    generation: u64,
    row: StoredCredential,
    masks: Masks,
}

impl fmt::Debug for ShownRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShownRows")
            .field("rows", &self.lock().len())
            .finish()
    }
}

impl ShownRows {
    /// Most rows kept (about 0.7 KiB each).
    pub(crate) const CAPACITY: usize = 4096;

    /// For each row, its masks if it was shown before unchanged under keys of `generation`.
    pub(crate) fn recall(
        &self,
        generation: Option<u64>,
        rows: &[StoredCredential],
    ) -> Vec<Option<Masks>> {
        let Some(generation) = generation else {
            return vec![None; rows.len()];
        };
        let entries = self.lock();
        rows.iter()
            .map(|row| {
                entries
                    .get(&row.id)
                    .filter(|kept| kept.generation == generation && kept.row == *row)
                    .map(|kept| kept.masks.clone())
            })
            .collect()
    }

    /// Keeps what bound, readable rows showed under keys of `generation`.
    pub(crate) fn keep(&self, generation: Option<u64>, shown: Vec<(StoredCredential, Masks)>) {
        let Some(generation) = generation else {
            return;
        };
        if shown.is_empty() {
            return;
        }
        let mut entries = self.lock();
        for (row, masks) in shown {
            if entries.len() >= Self::CAPACITY && !entries.contains_key(&row.id) {
                entries.clear();
            }
            entries.insert(
                row.id,
                Entry {
                    generation,
                    row,
                    masks,
                },
            );
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i64, Entry>> {
        // The map is consistent after every statement: a panic elsewhere cannot break it.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::stored_row;

    fn masks(key: &str) -> Masks {
        Masks {
            key: Some(key.to_owned()),
            secret: None,
        }
    }

    #[test]
    fn a_row_is_recalled_only_unchanged_and_under_the_same_keys() {
        let shown = ShownRows::default();
        let row = stored_row("binance", true, true, 1);
        shown.keep(Some(7), vec![(row.clone(), masks("a***"))]);
        assert_eq!(
            shown.recall(Some(7), std::slice::from_ref(&row)),
            vec![Some(masks("a***"))]
        );
        assert_eq!(
            shown.recall(Some(8), std::slice::from_ref(&row)),
            vec![None]
        );
        assert_eq!(shown.recall(None, std::slice::from_ref(&row)), vec![None]);
        let mut written = row.clone();
        written.version += 1;
        let mut consented = row.clone();
        consented.trading_enabled = !row.trading_enabled;
        let mut foreign = row.clone();
        foreign.api_key_encrypted = Some("enc:other".into());
        assert_eq!(
            shown.recall(Some(7), &[written, consented, foreign]),
            vec![None, None, None]
        );
    }

    #[test]
    fn nothing_is_kept_without_a_generation_and_the_memory_is_bounded() {
        let shown = ShownRows::default();
        let row = stored_row("binance", true, true, 1);
        shown.keep(None, vec![(row.clone(), masks("a***"))]);
        assert_eq!(shown.recall(Some(1), &[row]), vec![None]);
        let rows: Vec<_> = (0..=ShownRows::CAPACITY)
            .map(|i| {
                let mut row = stored_row("binance", true, true, 1);
                row.id = i64::try_from(i).unwrap_or(i64::MAX);
                (row, masks("a***"))
            })
            .collect();
        shown.keep(Some(1), rows);
        assert!(shown.lock().len() <= ShownRows::CAPACITY);
        assert_eq!(
            shown.lock().len(),
            1,
            "full: the memory started again empty"
        );
    }
}
