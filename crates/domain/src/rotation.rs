//! Key rotation and verification (docs/operations.md#zero-downtime-key-rotation): re-encrypt every credential row under the
//! primary key, and prove which key every row depends on.

use std::collections::BTreeMap;

use crate::credential::{BindingInput, KeyId, StoredCredential};
use crate::cutover::{BindingCheck, CutoverMode};
use crate::error::{CipherError, DomainError};
use crate::ports::{CredentialCipher, CredentialRepository, CredentialWrite};

/// Rows read per batch.
pub const ROTATION_BATCH: u32 = 500;
/// How many times a row that a concurrent writer changed is read again before giving up.
const ROW_ATTEMPTS: usize = 10;

/// Progress of a rotation or verification, after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Rows looked at so far.
    pub seen: u64,
    /// Highest row id looked at.
    pub last_id: i64,
}

/// What `keys rotate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Rows re-encrypted, per key id they were under before (`None`: Python rows).
    pub rotated_from: BTreeMap<Option<KeyId>, u64>,
    /// Rows already under the primary key with a valid binding.
    pub already_current: u64,
    /// Rows that could not be rotated (undecryptable, or kept losing to concurrent writers).
    pub failed: Vec<i64>,
}

impl RotationReport {
    /// Rows re-encrypted in all.
    pub fn rotated(&self) -> u64 {
        self.rotated_from.values().sum()
    }
}

/// What `keys verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Readable rows per key id recorded on the row (`None`: Python rows, no key id).
    pub rows_per_key: BTreeMap<Option<KeyId>, u64>,
    /// Rows whose recorded key is not configured.
    pub on_unconfigured_keys: u64,
    /// Rows without a binding tag (read only while cut-over mode is open).
    pub unbound: u64,
    /// Rows that fail to decrypt or fail their binding check (including unbound rows when the
    /// database is closed).
    pub failed: Vec<i64>,
}

/// Re-encrypts every row that is not under the primary key (or has no binding) in batches of
/// [`ROTATION_BATCH`]. An unbound row is rewritten (and so bound) only when `mode` admits it:
/// on a closed database it may be a moved ciphertext, and binding it would make it readable. Each batch is rewritten in one transaction, every row by compare-and-set
/// on its version: a row a user changed meanwhile is left to the user's write, read again and
/// retried alone. Idempotent (current rows are skipped) and resumable (start again from the
/// beginning, or from `after_id`).
pub async fn rotate(
    cipher: &dyn CredentialCipher,
    repository: &dyn CredentialRepository,
    mode: CutoverMode,
    after_id: i64,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<RotationReport, DomainError> {
    let primary = cipher.primary_key_id();
    let mut report = RotationReport::default();
    let mut cursor = after_id;
    let mut seen = 0;
    loop {
        let batch = repository.batch_after(cursor, ROTATION_BATCH).await?;
        let Some(last) = batch.last() else { break };
        cursor = last.id;
        seen += batch.len() as u64;
        rotate_batch(cipher, repository, &primary, mode, batch, &mut report).await?;
        progress(Progress {
            seen,
            last_id: cursor,
        });
    }
    Ok(report)
}

fn is_current(cipher: &dyn CredentialCipher, primary: &KeyId, row: &StoredCredential) -> bool {
    row.key_id.as_ref() == Some(primary) && cipher.verify_binding(row) == BindingCheck::Bound
}

async fn rotate_batch(
    cipher: &dyn CredentialCipher,
    repository: &dyn CredentialRepository,
    primary: &KeyId,
    mode: CutoverMode,
    batch: Vec<StoredCredential>,
    report: &mut RotationReport,
) -> Result<(), DomainError> {
    let mut rows = Vec::new();
    let mut writes = Vec::new();
    for row in batch {
        if is_current(cipher, primary, &row) {
            report.already_current += 1;
            continue;
        }
        match reencrypt(cipher, mode, &row)? {
            Some(write) => {
                writes.push((row.id, write));
                rows.push(row);
            }
            None => report.failed.push(row.id),
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    // A failed batch (a deadlock with a user's transaction, say) rewrote nothing: every row is
    // then done alone, which fails for good only if the database does.
    let applied = repository
        .rewrite(&writes)
        .await
        .unwrap_or_else(|_| vec![false; writes.len()]);
    for (index, row) in rows.into_iter().enumerate() {
        if applied.get(index).copied().unwrap_or(false) {
            *report.rotated_from.entry(row.key_id.clone()).or_default() += 1;
        } else {
            rotate_row(
                cipher,
                repository,
                primary,
                mode,
                row.user_id,
                row.id,
                report,
            )
            .await?;
        }
    }
    Ok(())
}

/// Rotates one row alone, reading it fresh first (a user may have changed or deleted it).
async fn rotate_row(
    cipher: &dyn CredentialCipher,
    repository: &dyn CredentialRepository,
    primary: &KeyId,
    mode: CutoverMode,
    user: crate::user::UserId,
    id: i64,
    report: &mut RotationReport,
) -> Result<(), DomainError> {
    for _ in 0..ROW_ATTEMPTS {
        let Some(row) = repository
            .list(user)
            .await?
            .into_iter()
            .find(|fresh| fresh.id == id)
        else {
            return Ok(());
        };
        if is_current(cipher, primary, &row) {
            report.already_current += 1;
            return Ok(());
        }
        let Some(write) = reencrypt(cipher, mode, &row)? else {
            report.failed.push(row.id);
            return Ok(());
        };
        if repository.rewrite(&[(row.id, write)]).await?.first() == Some(&true) {
            *report.rotated_from.entry(row.key_id.clone()).or_default() += 1;
            return Ok(());
        }
    }
    report.failed.push(id);
    Ok(())
}

/// The rewrite of `row` under the primary key; `None` when the row cannot be read.
fn reencrypt(
    cipher: &dyn CredentialCipher,
    mode: CutoverMode,
    row: &StoredCredential,
) -> Result<Option<CredentialWrite>, DomainError> {
    if !mode.admits(cipher.verify_binding(row)) {
        return Ok(None);
    }
    let mut halves = [None, None];
    for (slot, token) in halves
        .iter_mut()
        .zip([&row.api_key_encrypted, &row.api_secret_encrypted])
    {
        if let Some(token) = token {
            match cipher.decrypt(token) {
                Ok(opened) => *slot = Some(cipher.encrypt(&opened.value)?.token),
                Err(CipherError::Undecryptable | CipherError::NotUtf8) => return Ok(None),
                Err(other) => return Err(other.into()),
            }
        }
    }
    let [api_key_encrypted, api_secret_encrypted] = halves;
    let version = row.version + 1;
    let binding = cipher.bind(&BindingInput {
        user_id: row.user_id,
        broker: &row.broker,
        version,
        api_key_encrypted: api_key_encrypted.as_deref(),
        api_secret_encrypted: api_secret_encrypted.as_deref(),
        trading_enabled: row.trading_enabled,
    });
    Ok(Some(CredentialWrite {
        broker: row.broker.clone(),
        expected_version: Some(row.version),
        version,
        api_key_encrypted,
        api_secret_encrypted,
        key_id: cipher.primary_key_id(),
        binding,
        updated_at: row.updated_at,
        trading_enabled: row.trading_enabled,
        last_test_status: row.last_test_status.clone(),
        last_tested_at: row.last_tested_at,
    }))
}

/// Decrypts every row and checks its binding as a database in `mode` reads it; never returns a
/// value.
pub async fn verify(
    cipher: &dyn CredentialCipher,
    repository: &dyn CredentialRepository,
    mode: CutoverMode,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<VerifyReport, DomainError> {
    let configured = cipher.key_ids();
    let mut report = VerifyReport::default();
    let mut cursor = 0;
    let mut seen = 0;
    loop {
        let batch = repository.batch_after(cursor, ROTATION_BATCH).await?;
        let Some(last) = batch.last() else { break };
        cursor = last.id;
        for row in batch {
            seen += 1;
            if row
                .key_id
                .as_ref()
                .is_some_and(|id| !configured.contains(id))
            {
                report.on_unconfigured_keys += 1;
            }
            let check = cipher.verify_binding(&row);
            if check == BindingCheck::Unbound {
                report.unbound += 1;
            }
            let readable = mode.admits(check)
                && [&row.api_key_encrypted, &row.api_secret_encrypted]
                    .into_iter()
                    .flatten()
                    .all(|token| cipher.decrypt(token).is_ok());
            if readable {
                *report.rows_per_key.entry(row.key_id.clone()).or_default() += 1;
            } else {
                report.failed.push(row.id);
            }
        }
        progress(Progress {
            seen,
            last_id: cursor,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{MockCredentialCipher, MockCredentialRepository, Opened, Sealed};
    use crate::test_support::stored_row;
    use crate::{PlainSecret, RepositoryError, UserId};
    use secrecy::ExposeSecret;

    /// Tokens are `<key>:<plaintext>`; keys `old` and `new` (primary) are configured.
    fn cipher() -> MockCredentialCipher {
        let mut cipher = MockCredentialCipher::new();
        cipher
            .expect_primary_key_id()
            .returning(|| KeyId::new("new"));
        cipher
            .expect_key_ids()
            .returning(|| vec![KeyId::new("new"), KeyId::new("old")]);
        cipher.expect_decrypt().returning(|token| {
            let (key, plain) = token.split_once(':').ok_or(CipherError::Undecryptable)?;
            if key != "old" && key != "new" {
                return Err(CipherError::Undecryptable);
            }
            Ok(Opened {
                value: PlainSecret::new(plain),
                key_id: KeyId::new(key),
            })
        });
        cipher.expect_encrypt().returning(|value| {
            Ok(Sealed {
                token: format!("new:{}", value.expose_secret()),
                key_id: KeyId::new("new"),
            })
        });
        cipher
            .expect_bind()
            .returning(|input| format!("tag-{}-{}", input.user_id, input.version));
        cipher
            .expect_verify_binding()
            .returning(|row| match row.binding.as_deref() {
                None => BindingCheck::Unbound,
                Some(tag) if tag == format!("tag-{}-{}", row.user_id, row.version) => {
                    BindingCheck::Bound
                }
                Some(_) => BindingCheck::Mismatch,
            });
        cipher
    }

    fn row(id: i64, key: Option<&str>, token_key: &str) -> StoredCredential {
        let mut row = stored_row(&format!("b{id}"), true, true, 1);
        row.id = id;
        row.key_id = key.map(KeyId::new);
        row.binding = key.map(|_| "tag-1-1".to_owned());
        row.api_key_encrypted = Some(format!("{token_key}:key{id}"));
        row.api_secret_encrypted = Some(format!("{token_key}:secret{id}"));
        row
    }

    fn repository(rows: Vec<StoredCredential>) -> MockCredentialRepository {
        let mut repo = MockCredentialRepository::new();
        repo.expect_batch_after()
            .returning(move |after, _| Ok(rows.iter().filter(|r| r.id > after).cloned().collect()));
        repo
    }

    #[tokio::test]
    async fn rows_under_old_keys_and_python_rows_are_rewritten_under_the_primary() {
        let mut repo = repository(vec![
            row(1, Some("old"), "old"),
            row(2, None, "old"),
            row(3, Some("new"), "new"),
        ]);
        repo.expect_rewrite()
            .withf(|rows| {
                rows.iter().map(|(id, _)| *id).collect::<Vec<_>>() == [1, 2]
                    && rows.iter().all(|(_, w)| {
                        w.key_id.as_str() == "new"
                            && w.version == 2
                            && w.expected_version == Some(1)
                            && w.api_key_encrypted
                                .as_deref()
                                .is_some_and(|t| t.starts_with("new:key"))
                    })
            })
            .times(1)
            .returning(|rows| Ok(vec![true; rows.len()]));
        let mut batches = 0;
        let report = rotate(&cipher(), &repo, CutoverMode::Open, 0, &mut |_| {
            batches += 1
        })
        .await
        .unwrap();
        assert_eq!(report.rotated(), 2);
        assert_eq!(report.rotated_from.get(&None), Some(&1));
        assert_eq!(report.already_current, 1);
        assert!(report.failed.is_empty());
        assert_eq!(batches, 1);
    }

    #[tokio::test]
    async fn undecryptable_rows_are_reported_by_id_and_others_go_on() {
        let mut repo = repository(vec![
            row(7, Some("old"), "gone"),
            row(8, Some("old"), "old"),
        ]);
        repo.expect_rewrite()
            .withf(|rows| rows.len() == 1 && rows[0].0 == 8)
            .times(1)
            .returning(|_| Ok(vec![true]));
        let report = rotate(&cipher(), &repo, CutoverMode::Open, 0, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.failed, vec![7]);
        assert_eq!(report.rotated(), 1);
    }

    #[tokio::test]
    async fn a_row_changed_by_a_user_meanwhile_is_read_again() {
        let mut repo = repository(vec![row(1, Some("old"), "old")]);
        let mut seq = mockall::Sequence::new();
        repo.expect_rewrite()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(vec![false]));
        repo.expect_list()
            .with(mockall::predicate::eq(UserId(1)))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| {
                let mut fresh = row(1, Some("new"), "new");
                fresh.version = 5;
                fresh.binding = Some("tag-1-5".into());
                Ok(vec![fresh])
            });
        let report = rotate(&cipher(), &repo, CutoverMode::Open, 0, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(
            report.rotated(),
            0,
            "the user's write already put it under the primary"
        );
        assert_eq!(report.already_current, 1);
    }

    #[tokio::test]
    async fn a_failed_batch_is_retried_row_by_row() {
        let rows = vec![row(1, Some("old"), "old"), row(2, Some("old"), "old")];
        let fresh = rows.clone();
        let mut repo = repository(rows);
        let mut seq = mockall::Sequence::new();
        repo.expect_rewrite()
            .withf(|rows| rows.len() == 2)
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Err(RepositoryError::other("rewrite", "deadlock detected")));
        repo.expect_list().returning(move |_| Ok(fresh.clone()));
        repo.expect_rewrite()
            .withf(|rows| rows.len() == 1)
            .times(2)
            .returning(|_| Ok(vec![true]));
        let report = rotate(&cipher(), &repo, CutoverMode::Open, 0, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.rotated(), 2);
        assert!(report.failed.is_empty());
    }

    #[tokio::test]
    async fn verify_counts_rows_per_key_and_failures() {
        let mut tampered = row(4, Some("new"), "new");
        tampered.binding = Some("forged".into());
        let repo = repository(vec![
            row(1, Some("old"), "old"),
            row(2, None, "old"),
            row(3, Some("retired"), "retired"),
            tampered,
        ]);
        let report = verify(&cipher(), &repo, CutoverMode::Open, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.rows_per_key.get(&Some(KeyId::new("old"))), Some(&1));
        assert_eq!(report.rows_per_key.get(&None), Some(&1));
        assert_eq!(report.on_unconfigured_keys, 1);
        assert_eq!(report.unbound, 1);
        assert_eq!(report.failed, vec![3, 4]);
    }

    #[tokio::test]
    async fn a_closed_database_neither_binds_nor_passes_an_unbound_row() {
        let rows = vec![row(1, Some("old"), "old"), row(2, None, "old")];
        let mut repo = repository(rows.clone());
        repo.expect_rewrite()
            .withf(|rows| rows.len() == 1 && rows[0].0 == 1)
            .times(1)
            .returning(|_| Ok(vec![true]));
        let report = rotate(&cipher(), &repo, CutoverMode::Closed, 0, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.rotated(), 1);
        assert_eq!(report.failed, vec![2], "an unbound row may be a moved one");

        let repo = repository(rows);
        let report = verify(&cipher(), &repo, CutoverMode::Closed, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.unbound, 1);
        assert_eq!(report.failed, vec![2]);
    }
}
