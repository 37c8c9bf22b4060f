//! A deterministic stand-in for the Fernet key ring.

use secrecy::ExposeSecret;
use user_service_domain::ports::{CredentialCipher, Opened, Sealed};
use user_service_domain::{
    BindingCheck, BindingInput, CipherError, KeyId, PlainSecret, StoredCredential,
};

/// A deterministic stand-in for the Fernet cipher: `enc:` + hex of the plaintext, key id `test`,
/// and a binding that is a hash of the bound fields.
#[derive(Debug, Default)]
pub struct TestCipher;

impl TestCipher {
    /// The plaintext of a token made by [`TestCipher::encrypt`].
    pub fn open(token: &str) -> String {
        let hex = token.strip_prefix("enc:").expect("test token");
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect::<Vec<_>>();
        String::from_utf8(bytes).unwrap()
    }

    fn tag(input: &BindingInput<'_>) -> String {
        // FNV-1a over the bound fields: deterministic, enough to tell rows apart in tests.
        let text = format!(
            "{}|{}|{}|{}|{}{}",
            input.user_id.0,
            input.broker,
            input.version,
            input.api_key_encrypted.unwrap_or("-"),
            input.api_secret_encrypted.unwrap_or("-"),
            // Covered only when on, as the real tag does.
            if input.trading_enabled {
                "|trading"
            } else {
                ""
            }
        );
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("fnv:{hash:016x}")
    }
}

impl CredentialCipher for TestCipher {
    fn primary_key_id(&self) -> KeyId {
        KeyId::new("test")
    }

    fn key_ids(&self) -> Vec<KeyId> {
        vec![self.primary_key_id()]
    }

    fn encrypt(&self, plaintext: &PlainSecret) -> Result<Sealed, CipherError> {
        let hex: String = plaintext
            .expose_secret()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Sealed {
            token: format!("enc:{hex}"),
            key_id: self.primary_key_id(),
        })
    }

    fn decrypt(&self, token: &str) -> Result<Opened, CipherError> {
        if !token.starts_with("enc:") {
            return Err(CipherError::Undecryptable);
        }
        Ok(Opened {
            value: PlainSecret::new(Self::open(token)),
            key_id: self.primary_key_id(),
        })
    }

    fn bind(&self, input: &BindingInput<'_>) -> String {
        Self::tag(input)
    }

    fn verify_binding(&self, row: &StoredCredential) -> BindingCheck {
        match row.binding.as_deref() {
            None => BindingCheck::Unbound,
            Some(tag) if tag == Self::tag(&row.binding_input()) => BindingCheck::Bound,
            Some(_) => BindingCheck::Mismatch,
        }
    }
}
