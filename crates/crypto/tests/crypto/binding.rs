//! Row binding (docs/security.md): a ciphertext moved to another row no longer verifies.

use user_service_domain::ports::CredentialCipher;
use user_service_domain::BindingCheck;

use crate::support::{bound, key_id, ring, row, KEY_A, KEY_B, KEY_C};

const TOKEN_1: &str = "gAAAAABrBQ_Y-token-of-user-a";
const TOKEN_2: &str = "gAAAAABrBQ_Y-secret-of-user-a";
const TOKEN_3: &str = "gAAAAABrBQ_Y-token-of-user-b";
const TOKEN_4: &str = "gAAAAABrBQ_Y-secret-of-user-b";

#[test]
fn a_bound_row_verifies() {
    let ring = ring(KEY_A);
    let row = bound(&ring, row(1, "binance", 3, Some(TOKEN_1), Some(TOKEN_2)));
    assert!(row.binding.as_deref().unwrap().starts_with("v1."));
    assert_eq!(ring.verify_binding(&row), BindingCheck::Bound);
}

#[test]
fn binding_for_user_a_does_not_verify_for_user_b_with_the_same_ciphertext() {
    let ring = ring(KEY_A);
    let a = bound(&ring, row(1, "binance", 3, Some(TOKEN_1), Some(TOKEN_2)));
    let mut b = row(2, "binance", 3, Some(TOKEN_1), Some(TOKEN_2));
    b.binding = a.binding.clone();
    b.key_id = a.key_id.clone();
    assert_eq!(ring.verify_binding(&b), BindingCheck::Mismatch);
}

#[test]
fn swapped_ciphertext_is_rejected() {
    // Someone with write access to the table copies user B's whole row content (ciphertext,
    // version, key id, binding) into user A's row.
    let ring = ring(KEY_A);
    let b = bound(&ring, row(2, "binance", 5, Some(TOKEN_3), Some(TOKEN_4)));
    let mut a = bound(&ring, row(1, "binance", 3, Some(TOKEN_1), Some(TOKEN_2)));
    a.api_key_encrypted = b.api_key_encrypted.clone();
    a.api_secret_encrypted = b.api_secret_encrypted.clone();
    a.version = b.version;
    a.key_id = b.key_id.clone();
    a.binding = b.binding.clone();
    assert_eq!(ring.verify_binding(&a), BindingCheck::Mismatch);

    // Copying only one half, keeping A's own binding, fails too.
    let mut a = bound(&ring, row(1, "binance", 3, Some(TOKEN_1), Some(TOKEN_2)));
    a.api_secret_encrypted = Some(TOKEN_4.to_owned());
    assert_eq!(ring.verify_binding(&a), BindingCheck::Mismatch);
}

#[test]
fn ciphertext_moved_to_another_broker_or_version_is_rejected() {
    let ring = ring(KEY_A);
    let original = bound(&ring, row(1, "binance", 3, Some(TOKEN_1), None));
    let mut moved = original.clone();
    moved.broker = user_service_domain::BrokerId::parse("kraken").unwrap();
    assert_eq!(ring.verify_binding(&moved), BindingCheck::Mismatch);
    let mut replayed = original.clone();
    replayed.version = 4;
    assert_eq!(ring.verify_binding(&replayed), BindingCheck::Mismatch);
}

#[test]
fn halves_cannot_be_swapped_or_shifted() {
    let ring = ring(KEY_A);
    let cases = [
        (Some("ab"), Some("c"), Some("a"), Some("bc")),
        (Some("x"), Some("y"), Some("y"), Some("x")),
        (Some(""), None, None, Some("")),
        (Some(""), None, None, None),
        (None, Some(""), None, None),
    ];
    for (key, secret, other_key, other_secret) in cases {
        let original = bound(&ring, row(1, "binance", 1, key, secret));
        let mut changed = row(1, "binance", 1, other_key, other_secret);
        changed.binding = original.binding.clone();
        changed.key_id = original.key_id.clone();
        assert_eq!(
            ring.verify_binding(&changed),
            BindingCheck::Mismatch,
            "{key:?},{secret:?} vs {other_key:?},{other_secret:?}"
        );
    }
}

#[test]
fn a_row_without_a_tag_is_unbound_and_a_stripped_move_is_no_better() {
    // Whether an unbound row may be read is the cut-over mode's decision, not the ring's.
    let ring = ring(KEY_A);
    let legacy = row(1, "binance", 0, Some(TOKEN_1), Some(TOKEN_2));
    assert!(legacy.binding.is_none() && legacy.key_id.is_none());
    assert_eq!(ring.verify_binding(&legacy), BindingCheck::Unbound);
    // An attacker copies B's ciphertext into A's row and strips the tag: unbound as well.
    let mut swapped = row(1, "binance", 3, Some(TOKEN_3), Some(TOKEN_4));
    swapped.key_id = None;
    assert_eq!(ring.verify_binding(&swapped), BindingCheck::Unbound);
    let bound = bound(&ring, row(1, "binance", 3, Some(TOKEN_1), Some(TOKEN_2)));
    assert_eq!(ring.verify_binding(&bound), BindingCheck::Bound);
}

#[test]
fn bind_uses_the_primary_key() {
    let input_row = row(7, "alpaca", 2, Some(TOKEN_1), None);
    let input = input_row.binding_input();
    let tag_ab = ring(&format!("{KEY_A},{KEY_B}")).bind(&input);
    assert_eq!(tag_ab, ring(KEY_A).bind(&input));
    assert_ne!(tag_ab, ring(KEY_B).bind(&input));
}

#[test]
fn row_bound_under_an_older_key_verifies_after_rotation() {
    let old = ring(KEY_A);
    let row = bound(&old, row(1, "binance", 3, Some(TOKEN_1), Some(TOKEN_2)));
    assert_eq!(row.key_id, Some(key_id(KEY_A)));
    assert_eq!(
        ring(&format!("{KEY_B},{KEY_A}")).verify_binding(&row),
        BindingCheck::Bound
    );
    // Once the old key is retired the row no longer verifies (nor decrypts).
    assert_eq!(
        ring(&format!("{KEY_B},{KEY_C}")).verify_binding(&row),
        BindingCheck::Mismatch
    );
}

#[test]
fn binding_is_checked_under_the_key_the_row_names() {
    let ring = ring(&format!("{KEY_A},{KEY_B}"));
    let mut row = bound(&ring, row(1, "binance", 3, Some(TOKEN_1), None));
    // Bound under A; claiming B fails even though B is configured.
    row.key_id = Some(key_id(KEY_B));
    assert_eq!(ring.verify_binding(&row), BindingCheck::Mismatch);
    // A key id that is not configured fails.
    row.key_id = Some(key_id(KEY_C));
    assert_eq!(ring.verify_binding(&row), BindingCheck::Mismatch);
    // Without a key id, any configured key may have bound it.
    row.key_id = None;
    assert_eq!(ring.verify_binding(&row), BindingCheck::Bound);
    assert_eq!(
        crate::support::ring(KEY_C).verify_binding(&row),
        BindingCheck::Mismatch
    );
}

#[test]
fn malformed_or_forged_tags_fail() {
    let ring = ring(KEY_A);
    let good = bound(&ring, row(1, "binance", 3, Some(TOKEN_1), None));
    let tag = good.binding.clone().unwrap();
    let mut flipped = tag.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let forged = [
        String::new(),
        "v1.".to_owned(),
        "forged".to_owned(),
        tag.replacen("v1.", "v2.", 1),
        tag[..tag.len() - 1].to_owned(),
        format!("{tag}A"),
        String::from_utf8(flipped).unwrap(),
        format!("v1.{}", "A".repeat(43)),
    ];
    for binding in forged {
        let mut row = good.clone();
        row.binding = Some(binding.clone());
        assert_eq!(
            ring.verify_binding(&row),
            BindingCheck::Mismatch,
            "{binding:?}"
        );
    }
}
