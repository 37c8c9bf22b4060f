//! The update plan of docs/contract.md#update-rules: a pure function from (stored rows, request) to changes.

use std::collections::HashSet;

use crate::broker::BrokerId;
use crate::credential::StoredCredential;
use crate::error::ValidationError;
use crate::limits::MAX_ENTRIES_PER_UPDATE;
use crate::secret::{PlainSecret, SecretInput};

/// One entry of an update request, already parsed into domain types.
#[derive(Debug, Clone)]
pub struct CredentialUpdate {
    /// Normalised broker.
    pub broker: BrokerId,
    /// What to do with the API key.
    pub api_key: SecretInput,
    /// What to do with the API secret.
    pub api_secret: SecretInput,
    /// The owner's trading consent, when the entry sets it (`None`: unchanged, or off when the
    /// key or secret changes).
    pub trading_enabled: Option<bool>,
}

/// What happens to one half of a row.
#[derive(Debug, Clone)]
pub enum HalfChange {
    /// Keep the stored ciphertext (possibly none).
    Keep,
    /// Remove the stored half.
    Clear,
    /// Encrypt and store this value.
    Set(PlainSecret),
}

/// One change the plan asks the repository to make.
#[derive(Debug, Clone)]
pub enum PlannedChange {
    /// Create the row (`expected_version` is `None`) or rewrite it if its version is unchanged.
    Upsert {
        /// Broker of the row.
        broker: BrokerId,
        /// Version read before planning; `None` when the row does not exist yet.
        expected_version: Option<i64>,
        /// What happens to the API key.
        api_key: HalfChange,
        /// What happens to the API secret.
        api_secret: HalfChange,
        /// The consent the row has once written.
        trading_enabled: bool,
        /// Whether the row keeps its connection test result (only the consent changes).
        keeps_test_result: bool,
    },
    /// Delete the row (both halves end up empty) if its version is unchanged.
    Delete {
        /// Broker of the row.
        broker: BrokerId,
        /// Version read before planning.
        expected_version: i64,
    },
}

impl PlannedChange {
    /// Broker the change is about.
    pub fn broker(&self) -> &BrokerId {
        match self {
            Self::Upsert { broker, .. } | Self::Delete { broker, .. } => broker,
        }
    }
}

/// Plans an update request against the stored rows of one user.
///
/// Entries are taken in order. Duplicate brokers are refused (the whole request fails and nothing
/// changes). An entry with no field present is skipped. A row whose two halves end up empty
/// is deleted; an entry that would create an empty row is skipped.
///
/// Trading consent: an entry that changes the key or the secret turns it off unless it sets
/// `trading_enabled` itself; an entry with only `trading_enabled` changes the consent alone
/// (keeping the test result); for a broker with nothing stored there is nothing to consent to,
/// and the entry is skipped.
pub fn plan_update(
    stored: &[StoredCredential],
    request: Vec<CredentialUpdate>,
) -> Result<Vec<PlannedChange>, ValidationError> {
    if request.len() > MAX_ENTRIES_PER_UPDATE {
        return Err(ValidationError::TooManyEntries {
            max: MAX_ENTRIES_PER_UPDATE,
        });
    }
    let mut seen = HashSet::with_capacity(request.len());
    for entry in &request {
        if !seen.insert(entry.broker.clone()) {
            return Err(ValidationError::DuplicateBroker(entry.broker.to_string()));
        }
    }

    let mut changes = Vec::with_capacity(request.len());
    for entry in request {
        let current = stored.iter().find(|row| row.broker == entry.broker);
        if entry.api_key.is_keep() && entry.api_secret.is_keep() {
            let Some(wanted) = entry.trading_enabled else {
                continue;
            };
            let Some(row) = current else {
                continue;
            };
            if row.trading_enabled != wanted {
                changes.push(PlannedChange::Upsert {
                    broker: entry.broker,
                    expected_version: Some(row.version),
                    api_key: HalfChange::Keep,
                    api_secret: HalfChange::Keep,
                    trading_enabled: wanted,
                    keeps_test_result: true,
                });
            }
            continue;
        }
        let had_key = current.is_some_and(|row| row.api_key_encrypted.is_some());
        let had_secret = current.is_some_and(|row| row.api_secret_encrypted.is_some());
        let has_key = ends_present(&entry.api_key, had_key);
        let has_secret = ends_present(&entry.api_secret, had_secret);

        match (current, has_key || has_secret) {
            (Some(row), false) => changes.push(PlannedChange::Delete {
                broker: entry.broker,
                expected_version: row.version,
            }),
            (None, false) => {}
            (current, true) => changes.push(PlannedChange::Upsert {
                broker: entry.broker,
                expected_version: current.map(|row| row.version),
                api_key: half_change(entry.api_key),
                api_secret: half_change(entry.api_secret),
                trading_enabled: entry.trading_enabled.unwrap_or(false),
                keeps_test_result: false,
            }),
        }
    }
    Ok(changes)
}

fn ends_present(input: &SecretInput, was_present: bool) -> bool {
    match input {
        SecretInput::Keep => was_present,
        SecretInput::Clear => false,
        SecretInput::Set(_) => true,
    }
}

fn half_change(input: SecretInput) -> HalfChange {
    match input {
        SecretInput::Keep => HalfChange::Keep,
        SecretInput::Clear => HalfChange::Clear,
        SecretInput::Set(value) => HalfChange::Set(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{entry, stored_row};
    use secrecy::ExposeSecret;

    #[test]
    fn new_broker_with_both_halves_is_inserted() {
        let plan = plan_update(&[], vec![entry("Binance", Some("k"), Some("s"))]).unwrap();
        match &plan[..] {
            [PlannedChange::Upsert {
                broker,
                expected_version: None,
                api_key: HalfChange::Set(key),
                api_secret: HalfChange::Set(secret),
                trading_enabled: false,
                keeps_test_result: false,
            }] => {
                assert_eq!(broker.as_str(), "binance");
                assert_eq!(key.expose_secret(), "k");
                assert_eq!(secret.expose_secret(), "s");
            }
            other => panic!("unexpected plan {other:?}"),
        }
    }

    #[test]
    fn absent_field_keeps_the_stored_half() {
        let stored = [stored_row("binance", true, true, 3)];
        let plan = plan_update(&stored, vec![entry("binance", None, Some("new"))]).unwrap();
        assert!(matches!(
            &plan[..],
            [PlannedChange::Upsert {
                expected_version: Some(3),
                api_key: HalfChange::Keep,
                api_secret: HalfChange::Set(_),
                ..
            }]
        ));
    }

    #[test]
    fn put_with_null_secret_clears_only_the_secret() {
        let stored = [stored_row("binance", true, true, 1)];
        let mut update = entry("binance", None, None);
        update.api_secret = SecretInput::Clear;
        let plan = plan_update(&stored, vec![update]).unwrap();
        assert!(matches!(
            &plan[..],
            [PlannedChange::Upsert {
                api_key: HalfChange::Keep,
                api_secret: HalfChange::Clear,
                ..
            }]
        ));
    }

    #[test]
    fn clearing_the_last_half_deletes_the_row() {
        let stored = [stored_row("binance", false, true, 7)];
        let mut update = entry("binance", None, None);
        update.api_secret = SecretInput::Clear;
        let plan = plan_update(&stored, vec![update]).unwrap();
        assert!(matches!(
            &plan[..],
            [PlannedChange::Delete {
                expected_version: 7,
                ..
            }]
        ));
    }

    #[test]
    fn clearing_a_broker_that_is_not_stored_changes_nothing() {
        let mut update = entry("kraken", None, None);
        update.api_key = SecretInput::Clear;
        update.api_secret = SecretInput::Clear;
        assert!(plan_update(&[], vec![update]).unwrap().is_empty());
    }

    #[test]
    fn entry_with_neither_field_is_skipped() {
        let stored = [stored_row("binance", true, true, 1)];
        assert!(plan_update(&stored, vec![entry("binance", None, None)])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn duplicate_brokers_after_normalisation_are_refused() {
        let error = plan_update(
            &[],
            vec![
                entry("binance", Some("a"), None),
                entry(" BINANCE ", Some("b"), None),
            ],
        )
        .unwrap_err();
        assert_eq!(error, ValidationError::DuplicateBroker("binance".into()));
        assert!(error.is_bad_request());
    }

    #[test]
    fn entries_are_planned_in_request_order() {
        let plan = plan_update(
            &[],
            vec![
                entry("kraken", Some("a"), None),
                entry("alpaca", Some("b"), None),
            ],
        )
        .unwrap();
        let brokers: Vec<_> = plan.iter().map(|c| c.broker().as_str()).collect();
        assert_eq!(brokers, ["kraken", "alpaca"]);
    }

    #[test]
    fn too_many_entries_are_refused() {
        let request = (0..=MAX_ENTRIES_PER_UPDATE)
            .map(|i| entry(&format!("b{i}"), Some("k"), None))
            .collect();
        assert!(matches!(
            plan_update(&[], request),
            Err(ValidationError::TooManyEntries { .. })
        ));
    }

    fn consenting(broker: &str, on: bool) -> CredentialUpdate {
        let mut update = entry(broker, None, None);
        update.trading_enabled = Some(on);
        update
    }

    #[test]
    fn consent_alone_changes_only_the_consent_and_keeps_the_test_result() {
        let stored = [stored_row("binance", true, true, 4)];
        let plan = plan_update(&stored, vec![consenting("binance", true)]).unwrap();
        assert!(matches!(
            &plan[..],
            [PlannedChange::Upsert {
                expected_version: Some(4),
                api_key: HalfChange::Keep,
                api_secret: HalfChange::Keep,
                trading_enabled: true,
                keeps_test_result: true,
                ..
            }]
        ));
    }

    #[test]
    fn consent_already_in_that_state_writes_nothing() {
        let stored = [stored_row("binance", true, true, 4)];
        assert!(plan_update(&stored, vec![consenting("binance", false)])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_new_key_or_secret_ends_the_consent() {
        let mut row = stored_row("binance", true, true, 2);
        row.trading_enabled = true;
        for update in [
            entry("binance", Some("new-key"), None),
            entry("binance", None, Some("new-secret")),
        ] {
            let plan = plan_update(std::slice::from_ref(&row), vec![update]).unwrap();
            assert!(matches!(
                &plan[..],
                [PlannedChange::Upsert {
                    trading_enabled: false,
                    keeps_test_result: false,
                    ..
                }]
            ));
        }
        // Unless the same entry gives the consent again, for the new key.
        let mut update = entry("binance", None, Some("new-secret"));
        update.trading_enabled = Some(true);
        let plan = plan_update(&[row], vec![update]).unwrap();
        assert!(matches!(
            &plan[..],
            [PlannedChange::Upsert {
                trading_enabled: true,
                ..
            }]
        ));
    }

    #[test]
    fn consent_for_a_broker_with_nothing_stored_changes_nothing() {
        assert!(plan_update(&[], vec![consenting("kraken", true)])
            .unwrap()
            .is_empty());
    }
}
