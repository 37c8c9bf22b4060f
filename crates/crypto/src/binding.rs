//! The row binding tag (docs/security.md): an HMAC over the fields of a row, so that a ciphertext copied
//! into another row (another user, broker or version) no longer verifies.
//!
//! Tag: `v1.` followed by the unpadded url-safe base64 of
//! HMAC-SHA256(binding key, canonical encoding of the [`BindingInput`]). The canonical encoding
//! is, in order, with every integer big-endian:
//!
//! | field | encoding |
//! |---|---|
//! | `user_id` | i64 |
//! | `broker` | u64 length in bytes, then the UTF-8 bytes |
//! | `version` | i64 |
//! | `api_key_encrypted` | `0x00` when absent; `0x01`, u64 length, bytes when present |
//! | `api_secret_encrypted` | same |
//! | `trading_enabled` | nothing when off; `0x01` then the bytes `trading` when on |
//!
//! Fixed-width integers and length prefixes make the encoding injective: no two inputs share
//! it, so moving bytes between fields, or turning an absent token into an empty one, changes the
//! tag.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use user_service_domain::BindingInput;

use crate::key::{hmac_sha256, HmacSha256};

/// Prefix naming the tag format.
const TAG_PREFIX: &str = "v1.";

/// Length of the HMAC-SHA256 output.
const MAC_LEN: usize = 32;

/// The binding tag of `input` under `binding_key`.
pub(crate) fn tag(binding_key: &[u8; 32], input: &BindingInput<'_>) -> String {
    let mac = keyed_over(binding_key, input).finalize().into_bytes();
    let mut tag = String::with_capacity(TAG_PREFIX.len() + 43);
    tag.push_str(TAG_PREFIX);
    URL_SAFE_NO_PAD.encode_string(mac, &mut tag);
    tag
}

/// The MAC carried by a tag, `None` when the tag is not of the `v1` form.
pub(crate) fn decode(tag: &str) -> Option<[u8; MAC_LEN]> {
    let encoded = tag.strip_prefix(TAG_PREFIX)?;
    let mut mac = [0u8; MAC_LEN];
    // The canonical encoding of 32 bytes is 43 characters; anything else is not ours.
    if encoded.len() != 43 {
        return None;
    }
    match URL_SAFE_NO_PAD.decode_slice(encoded, &mut mac) {
        Ok(MAC_LEN) => Some(mac),
        _ => None,
    }
}

/// Whether `mac` is the binding MAC of `input` under `binding_key`, compared in constant time.
pub(crate) fn verify(
    binding_key: &[u8; 32],
    input: &BindingInput<'_>,
    mac: &[u8; MAC_LEN],
) -> bool {
    keyed_over(binding_key, input).verify_slice(mac).is_ok()
}

fn keyed_over(binding_key: &[u8; 32], input: &BindingInput<'_>) -> HmacSha256 {
    let mut mac = hmac_sha256(binding_key);
    mac.update(&input.user_id.0.to_be_bytes());
    update_bytes(&mut mac, input.broker.as_str().as_bytes());
    mac.update(&input.version.to_be_bytes());
    update_optional(&mut mac, input.api_key_encrypted);
    update_optional(&mut mac, input.api_secret_encrypted);
    // Last and only when on: tags written before the consent existed (all off) still verify.
    if input.trading_enabled {
        mac.update(b"\x01trading");
    }
    mac
}

fn update_bytes(mac: &mut HmacSha256, bytes: &[u8]) {
    // usize is at most 64 bits on every supported target.
    mac.update(&(bytes.len() as u64).to_be_bytes());
    mac.update(bytes);
}

fn update_optional(mac: &mut HmacSha256, token: Option<&str>) {
    match token {
        None => mac.update(&[0x00]),
        Some(token) => {
            mac.update(&[0x01]);
            update_bytes(mac, token.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use user_service_domain::{BrokerId, UserId};

    use super::*;
    use crate::key::RawKey;

    fn binding_key() -> [u8; 32] {
        *RawKey::from_bytes(std::array::from_fn(|i| 0xc8 + i as u8)).binding_key()
    }

    #[test]
    fn tag_matches_the_documented_encoding() {
        // Known answer, computed with Python from the encoding documented above:
        //   bk = hmac.new(bytes(range(0xc8, 0xe8)), b"user-service/binding/v1", "sha256").digest()
        //   msg = struct.pack(">q", 42) + struct.pack(">Q", 7) + b"binance" + struct.pack(">q", 3)
        //       + b"\x01" + struct.pack(">Q", 10) + b"gAAAAA-key" + b"\x00"
        //   "v1." + base64.urlsafe_b64encode(hmac.new(bk, msg, "sha256").digest()).rstrip(b"=")
        let broker = BrokerId::parse("binance").unwrap();
        let input = BindingInput {
            user_id: UserId(42),
            broker: &broker,
            version: 3,
            api_key_encrypted: Some("gAAAAA-key"),
            api_secret_encrypted: None,
            trading_enabled: false,
        };
        assert_eq!(tag(&binding_key(), &input), KNOWN_TAG);
    }

    #[test]
    fn consent_is_covered_only_when_on() {
        // The same input with consent on; Python: the message above + b"\x01trading".
        let broker = BrokerId::parse("binance").unwrap();
        let mut input = BindingInput {
            user_id: UserId(42),
            broker: &broker,
            version: 3,
            api_key_encrypted: Some("gAAAAA-key"),
            api_secret_encrypted: None,
            trading_enabled: true,
        };
        assert_eq!(
            tag(&binding_key(), &input),
            "v1.mx3pr1uC3rN4gBnWaPJdSPNZ0cscfO7mWJO4Us9hr4s"
        );
        // A row whose consent was turned on behind the service's back fails its check.
        let mac = decode(KNOWN_TAG).unwrap();
        assert!(!verify(&binding_key(), &input, &mac));
        input.trading_enabled = false;
        assert!(verify(&binding_key(), &input, &mac));
    }

    #[test]
    fn tag_round_trips_through_decode() {
        let broker = BrokerId::parse("kraken").unwrap();
        let input = BindingInput {
            user_id: UserId(-1),
            broker: &broker,
            version: i64::MAX,
            api_key_encrypted: None,
            api_secret_encrypted: Some(""),
            trading_enabled: false,
        };
        let tag = tag(&binding_key(), &input);
        assert!(tag.starts_with("v1.") && tag.len() == 46, "{tag}");
        let mac = decode(&tag).unwrap();
        assert!(verify(&binding_key(), &input, &mac));
    }

    #[test]
    fn malformed_tags_are_not_decoded() {
        let good = "v1.".to_owned() + &"A".repeat(43);
        assert!(decode(&good).is_some());
        for bad in [
            "",
            "v1.",
            "v2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%",
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    const KNOWN_TAG: &str = "v1.iA-H-Mqn9M40TTB4UjlLDE0HxtqWmTCIj5o1fuRKXic";
}
