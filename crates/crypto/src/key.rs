//! One key of the ring: parsing as Python's `Fernet(key)` does, and what is derived from it.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use user_service_domain::KeyId;
use zeroize::Zeroizing;

use crate::error::KeyProblem;

/// HMAC-SHA256.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Length of a Fernet key in bytes (16 signing + 16 encryption).
pub(crate) const KEY_LEN: usize = 32;

/// Label of the key id derivation (docs/contract.md#encryption).
const KEY_ID_LABEL: &[u8] = b"user-service/key-id/v1";

/// Label of the binding key derivation (docs/security.md).
const BINDING_KEY_LABEL: &[u8] = b"user-service/binding/v1";

/// Bytes of the HMAC kept in a key id (16 hex characters).
const KEY_ID_BYTES: usize = 8;

/// Decodes unpadded url-safe base64 and, as Python's non-strict decoder, ignores non-zero bits
/// in the last character.
const LENIENT_URL_SAFE_NO_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// The 32 raw bytes of one key, zeroized on drop.
pub(crate) struct RawKey(Zeroizing<[u8; KEY_LEN]>);

/// Whitespace that may surround a key. Python's decoder skips every non-base64 ASCII character;
/// we only allow ASCII whitespace around the key (docs/contract.md#encryption: anything else is an error). A
/// non-ASCII character makes Python refuse the key, so Unicode whitespace is not trimmed.
pub(crate) fn is_surrounding_space(c: char) -> bool {
    c.is_ascii_whitespace() || c == '\x0b'
}

fn is_base64_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/')
}

impl RawKey {
    /// Parses one key: url-safe or standard base64 (even mixed, as Python's
    /// `urlsafe_b64decode`), surrounding whitespace allowed, `=` padding required, exactly 32
    /// bytes.
    pub(crate) fn parse(text: &str) -> Result<Self, KeyProblem> {
        let start_trimmed = text.trim_start_matches(is_surrounding_space);
        let leading = text.len() - start_trimmed.len();
        let body = start_trimmed.trim_end_matches(is_surrounding_space);
        if body.is_empty() {
            return Err(KeyProblem::Blank);
        }
        if let Some(position) = body.chars().position(|c| !is_base64_char(c) && c != '=') {
            return Err(KeyProblem::InvalidCharacter {
                index: leading + position + 1,
            });
        }
        let data = body.trim_end_matches('=');
        let padding = body.len() - data.len();
        if data.contains('=') {
            return Err(KeyProblem::MisplacedPadding);
        }
        let bytes = data.len() * 6 / 8;
        if bytes != KEY_LEN {
            return Err(KeyProblem::WrongLength { bytes });
        }
        // 32 bytes are 43 base64 characters and one `=`.
        match padding {
            0 => return Err(KeyProblem::MissingPadding),
            1 => {}
            _ => return Err(KeyProblem::ExtraPadding),
        }

        let mut url_safe = Zeroizing::new(data.as_bytes().to_vec());
        for byte in url_safe.iter_mut() {
            *byte = match *byte {
                b'+' => b'-',
                b'/' => b'_',
                other => other,
            };
        }
        let mut decoded = Zeroizing::new(Vec::with_capacity(KEY_LEN + 3));
        LENIENT_URL_SAFE_NO_PAD
            .decode_vec(url_safe.as_slice(), &mut decoded)
            .map_err(|_| KeyProblem::InvalidCharacter { index: leading + 1 })?;
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        if decoded.len() != KEY_LEN {
            return Err(KeyProblem::WrongLength {
                bytes: decoded.len(),
            });
        }
        raw.copy_from_slice(&decoded);
        Ok(Self(raw))
    }

    /// Wraps raw key bytes.
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key id: the first 16 hex characters of HMAC-SHA256(key, `user-service/key-id/v1`).
    pub(crate) fn key_id(&self) -> KeyId {
        let mut mac = hmac_sha256(self.0.as_slice());
        mac.update(KEY_ID_LABEL);
        let digest = mac.finalize().into_bytes();
        KeyId::new(hex(&digest[..KEY_ID_BYTES]))
    }

    /// The binding key: HMAC-SHA256(key, `user-service/binding/v1`).
    pub(crate) fn binding_key(&self) -> Zeroizing<[u8; 32]> {
        let mut mac = hmac_sha256(self.0.as_slice());
        mac.update(BINDING_KEY_LABEL);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&mac.finalize().into_bytes());
        key
    }

    /// The Fernet instance of this key.
    pub(crate) fn fernet(&self) -> Result<fernet::Fernet, KeyProblem> {
        // `fernet::Fernet::new` only takes canonical url-safe base64 text.
        let mut canonical = Zeroizing::new(String::with_capacity(48));
        URL_SAFE.encode_string(self.0.as_slice(), &mut canonical);
        fernet::Fernet::new(&canonical).ok_or(KeyProblem::Refused)
    }
}

/// A keyed HMAC-SHA256.
pub(crate) fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const KEY: &str = "yMnKy8zNzs_Q0dLT1NXW19jZ2tvc3d7f4OHi4-Tl5uc=";

    fn bytes_of(text: &str) -> [u8; KEY_LEN] {
        *RawKey::parse(text).unwrap().0
    }

    #[test]
    fn url_safe_and_standard_alphabets_give_the_same_bytes() {
        let expected: Vec<u8> = (0xc8..=0xe7).collect();
        assert_eq!(bytes_of(KEY).to_vec(), expected);
        assert_eq!(
            bytes_of("yMnKy8zNzs/Q0dLT1NXW19jZ2tvc3d7f4OHi4+Tl5uc=").to_vec(),
            expected
        );
        // Python's urlsafe_b64decode maps both alphabets, so a mix is accepted too.
        assert_eq!(
            bytes_of("yMnKy8zNzs/Q0dLT1NXW19jZ2tvc3d7f4OHi4-Tl5uc=").to_vec(),
            expected
        );
    }

    #[test]
    fn surrounding_ascii_whitespace_is_ignored() {
        for text in [
            format!(" {KEY}"),
            format!("{KEY}\r\n"),
            format!("\t\x0b\x0c{KEY} "),
        ] {
            assert_eq!(bytes_of(&text), bytes_of(KEY), "{text:?}");
        }
    }

    #[test]
    fn non_zero_trailing_bits_are_ignored_as_python_does() {
        // `c` and `d` differ only in the two bits beyond the 32nd byte.
        let variant = KEY.replace("5uc=", "5ud=");
        assert_eq!(bytes_of(&variant), bytes_of(KEY));
    }

    #[test]
    fn malformed_keys_name_the_problem() {
        // Each malformed text is the good key with one thing wrong.
        #[rustfmt::skip]
        let cases = [
            (String::new(), KeyProblem::Blank),
            (" \t\n".to_owned(), KeyProblem::Blank),
            (KEY.trim_end_matches('=').to_owned(), KeyProblem::MissingPadding),
            (format!("{KEY}="), KeyProblem::ExtraPadding),
            (KEY.replace("5uc=", "5g=="), KeyProblem::WrongLength { bytes: 31 }),
            (KEY.replace("5uc=", "5ud4"), KeyProblem::WrongLength { bytes: 33 }),
            (KEY.replacen("s_", "=_", 1), KeyProblem::MisplacedPadding),
            (format!(" {}", KEY.replace('_', " ")), KeyProblem::InvalidCharacter { index: 12 }),
            (format!("\u{a0}{KEY}"), KeyProblem::InvalidCharacter { index: 1 }),
        ];
        for (text, problem) in cases {
            assert_eq!(RawKey::parse(&text).err(), Some(problem), "{text:?}");
        }
    }

    #[test]
    fn key_id_is_an_hmac_of_a_fixed_label_not_a_hash_of_the_key() {
        // Known answer, computed with Python:
        // hmac.new(bytes(range(0xc8, 0xe8)), b"user-service/key-id/v1", "sha256").hexdigest()[:16]
        let key = RawKey::from_bytes(std::array::from_fn(|i| 0xc8 + i as u8));
        assert_eq!(key.key_id().as_str(), KEY_ID_OF_C8_TO_E7);
        // Not the plain SHA-256 of the key.
        assert_ne!(key.key_id().as_str(), "ddaa3357f98f1e51");
    }

    #[test]
    fn binding_key_is_an_hmac_of_its_own_label() {
        // Known answer, computed with Python:
        // hmac.new(bytes(range(0xc8, 0xe8)), b"user-service/binding/v1", "sha256").hexdigest()
        let key = RawKey::from_bytes(std::array::from_fn(|i| 0xc8 + i as u8));
        assert_eq!(hex(key.binding_key().as_slice()), BINDING_KEY_OF_C8_TO_E7);
    }

    const KEY_ID_OF_C8_TO_E7: &str = "c16be0d095a92ae0";
    const BINDING_KEY_OF_C8_TO_E7: &str =
        "213337f52b3370c416658956cd70c043bdb3218221645f89b504fb742e31c566";
}
