//! JSON Web Tokens, as the platform's auth service issues them: HS256 only, `sub` = a user id
//! (as a string) or a service name, `exp` required, `nbf` honoured, optional `iss` / `aud`
//! checks, `type: "refresh"` for refresh tokens (refused wherever an access token is needed).
//! Refresh tokens this service issues also carry their session (`jti`) and session family
//! (`fam`), so that a session can be revoked and a reused token detected.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use user_service_domain::{Principal, UserId};

/// Lifetime of an access token issued by this service.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 15 * 60;
/// Lifetime of a refresh token issued by this service.
pub const REFRESH_TOKEN_TTL_SECS: i64 = 7 * 24 * 3600;

/// Kind of a token, from its `type` claim (absent means access, as the platform issues them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// Grants API access.
    Access,
    /// Only exchanges for a new token pair at `/auth/refresh`.
    Refresh,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: serde_json::Value,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    kind: Option<TokenKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fam: Option<String>,
}

/// The session a refresh token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaims {
    /// This token's session id (`jti`).
    pub id: String,
    /// The family of sessions it was rotated from (`fam`).
    pub family: String,
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Who the token speaks for.
    pub principal: Principal,
    /// Access or refresh.
    pub kind: TokenKind,
    /// The session of a refresh token issued by this service.
    pub session: Option<SessionClaims>,
    /// When it expires (seconds since the epoch).
    pub expires_at: i64,
    /// When it starts to be valid (`nbf`, seconds since the epoch), if it says.
    pub not_before: Option<i64>,
}

/// The token is missing, malformed, badly signed, expired, not yet valid or of the wrong kind.
/// Carries no detail on purpose: every case answers `401 Invalid token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid token")]
pub struct InvalidToken;

/// Verifies and issues HS256 tokens with the configured secret.
pub struct TokenCodec {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    /// Access tokens this codec verified, by SHA-256 of the token (never the token itself).
    verified: Mutex<HashMap<[u8; 32], Remembered>>,
}

/// What a verified access token said, for as long as it is valid.
struct Remembered {
    principal: Principal,
    expires_at: i64,
    not_before: Option<i64>,
}

impl Remembered {
    /// Valid at `now`, by the same rules as a full verification: `exp` not passed, `nbf`
    /// reached, no leeway.
    fn valid_at(&self, now: i64) -> bool {
        self.expires_at >= now && self.not_before.is_none_or(|nbf| nbf <= now)
    }
}

/// Most access tokens remembered (about a hundred bytes each); past that, those expired are
/// dropped, and if none is, the memory starts again empty.
const REMEMBERED_TOKENS: usize = 4096;

impl fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCodec")
            .field("secret", &"[REDACTED]")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl TokenCodec {
    /// A codec for `secret`, checking `iss` / `aud` when given.
    pub fn new(secret: &SecretString, issuer: Option<String>, audience: Option<String>) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        // Only HS256: `none` and every other algorithm are refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if issuer.is_some() {
            required.push("iss");
        }
        if audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        match &issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Self {
            decoding: DecodingKey::from_secret(bytes),
            encoding: EncodingKey::from_secret(bytes),
            validation,
            issuer,
            audience,
            verified: Mutex::default(),
        }
    }

    /// Verifies signature, algorithm, expiry, not-before and the optional `iss` / `aud`, and
    /// reads the subject.
    pub fn verify(&self, token: &str) -> Result<Verified, InvalidToken> {
        let data =
            decode::<Claims>(token, &self.decoding, &self.validation).map_err(|_| InvalidToken)?;
        let claims = data.claims;
        let principal = match &claims.sub {
            serde_json::Value::String(s) => Principal::from_subject(s),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(UserId)
                .filter(|id| id.is_valid())
                .map(Principal::User),
            _ => None,
        }
        .ok_or(InvalidToken)?;
        let session = match (claims.jti, claims.fam) {
            (Some(id), Some(family)) => Some(SessionClaims { id, family }),
            _ => None,
        };
        Ok(Verified {
            principal,
            kind: claims.kind.unwrap_or(TokenKind::Access),
            session,
            expires_at: claims.exp,
            not_before: claims.nbf,
        })
    }

    /// Verifies a token that must grant API access (refresh tokens are refused).
    ///
    /// A client sends the same access token with every request for its lifetime, and checking
    /// it (two base64 and JSON decodings, an HMAC) is a tenth of a credential list's own work.
    /// So an access token verified once is remembered by its SHA-256 and, while it is still
    /// valid by its `exp` and `nbf`, accepted again on the digest alone: the same bytes under the
    /// same secret verify alike. A reloaded secret makes a new codec, which remembers nothing.
    pub fn verify_access(&self, token: &str) -> Result<Principal, InvalidToken> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = chrono::Utc::now().timestamp();
        if let Some(known) = self.remembered().get(&digest) {
            if known.valid_at(now) {
                return Ok(known.principal.clone());
            }
        }
        let verified = self.verify(token)?;
        if verified.kind != TokenKind::Access {
            return Err(InvalidToken);
        }
        let known = Remembered {
            principal: verified.principal.clone(),
            expires_at: verified.expires_at,
            not_before: verified.not_before,
        };
        self.remember(digest, known, now);
        Ok(verified.principal)
    }

    fn remembered(&self) -> MutexGuard<'_, HashMap<[u8; 32], Remembered>> {
        // Every statement leaves the map whole: a panic elsewhere cannot break it.
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, digest: [u8; 32], token: Remembered, now: i64) {
        let mut remembered = self.remembered();
        if remembered.len() >= REMEMBERED_TOKENS {
            remembered.retain(|_, known| known.valid_at(now));
            if remembered.len() >= REMEMBERED_TOKENS {
                remembered.clear();
            }
        }
        remembered.insert(digest, token);
    }

    /// Issues an access token for `principal`, valid for [`ACCESS_TOKEN_TTL_SECS`].
    pub fn issue_access(&self, principal: &Principal) -> SecretString {
        let now = chrono::Utc::now().timestamp();
        self.sign(
            principal,
            TokenKind::Access,
            now + ACCESS_TOKEN_TTL_SECS,
            None,
        )
    }

    /// Issues a refresh token for `user` in `session`, valid for [`REFRESH_TOKEN_TTL_SECS`].
    pub fn issue_refresh(&self, user: UserId, session: &SessionClaims) -> SecretString {
        let now = chrono::Utc::now().timestamp();
        self.sign(
            &Principal::User(user),
            TokenKind::Refresh,
            now + REFRESH_TOKEN_TTL_SECS,
            Some(session),
        )
    }

    /// Issues a token of `kind` for `principal` expiring at `exp` (seconds since the epoch);
    /// tests use it for expired tokens.
    pub fn issue_with_expiry(
        &self,
        principal: &Principal,
        kind: TokenKind,
        exp: i64,
    ) -> SecretString {
        self.sign(principal, kind, exp, None)
    }

    fn sign(
        &self,
        principal: &Principal,
        kind: TokenKind,
        exp: i64,
        session: Option<&SessionClaims>,
    ) -> SecretString {
        let claims = Claims {
            sub: serde_json::Value::String(principal.subject()),
            exp,
            iat: Some(chrono::Utc::now().timestamp()),
            nbf: None,
            kind: Some(kind),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: session.map(|s| s.id.clone()),
            fam: session.map(|s| s.family.clone()),
        };
        // Encoding HS256 claims with an HMAC key cannot fail.
        SecretString::from(
            encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use user_service_domain::ServiceName;

    use super::*;

    fn codec() -> TokenCodec {
        TokenCodec::new(
            &SecretString::from("test-secret-test-secret-32-bytes!"),
            None,
            None,
        )
    }

    fn user(id: i64) -> Principal {
        Principal::User(UserId(id))
    }

    fn raw(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"test-secret-test-secret-32-bytes!"),
        )
        .unwrap()
    }

    #[test]
    fn issued_access_token_verifies() {
        let codec = codec();
        let token = codec.issue_access(&user(42));
        assert_eq!(codec.verify_access(token.expose_secret()), Ok(user(42)));
    }

    #[test]
    fn refresh_token_is_refused_for_api_access_and_carries_its_session() {
        let codec = codec();
        let session = SessionClaims {
            id: "s1".into(),
            family: "f1".into(),
        };
        let token = codec.issue_refresh(UserId(42), &session);
        assert_eq!(
            codec.verify_access(token.expose_secret()),
            Err(InvalidToken)
        );
        let verified = codec.verify(token.expose_secret()).unwrap();
        assert_eq!(verified.kind, TokenKind::Refresh);
        assert_eq!(verified.session, Some(session));
    }

    #[test]
    fn expired_token_is_refused() {
        let codec = codec();
        let token = codec.issue_with_expiry(&user(1), TokenKind::Access, 1_000);
        assert_eq!(
            codec.verify_access(token.expose_secret()),
            Err(InvalidToken)
        );
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let tomorrow = chrono::Utc::now().timestamp() + 86_400;
        let token = raw(serde_json::json!({"sub": "1", "exp": tomorrow + 60, "nbf": tomorrow}));
        assert_eq!(codec().verify_access(&token), Err(InvalidToken));
        let past = chrono::Utc::now().timestamp() - 60;
        let token = raw(serde_json::json!({"sub": "1", "exp": tomorrow, "nbf": past}));
        assert_eq!(codec().verify_access(&token), Ok(user(1)));
    }

    #[test]
    fn a_service_subject_is_a_service_principal() {
        let exp = chrono::Utc::now().timestamp() + 60;
        let token = raw(serde_json::json!({"sub": "auth-service", "exp": exp}));
        assert_eq!(
            codec().verify_access(&token),
            Ok(Principal::Service(
                ServiceName::parse("auth-service").unwrap()
            ))
        );
    }

    #[test]
    fn subjects_outside_the_user_id_range_are_refused() {
        let exp = chrono::Utc::now().timestamp() + 60;
        for sub in [
            serde_json::json!("0"),
            serde_json::json!("9223372036854775807"),
            serde_json::json!(9_007_199_254_740_992_i64),
            serde_json::json!(-5),
            serde_json::json!(null),
        ] {
            let token = raw(serde_json::json!({"sub": sub, "exp": exp}));
            assert_eq!(codec().verify_access(&token), Err(InvalidToken), "{sub}");
        }
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let other = TokenCodec::new(&SecretString::from("another-secret"), None, None);
        let token = other.issue_access(&user(1));
        assert_eq!(
            codec().verify_access(token.expose_secret()),
            Err(InvalidToken)
        );
    }

    #[test]
    fn unsigned_token_is_refused() {
        // {"alg":"none","typ":"JWT"}.{"sub":"1","exp":9999999999}.
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert_eq!(codec().verify_access(token), Err(InvalidToken));
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let secret = SecretString::from("s3cret");
        let strict = TokenCodec::new(&secret, Some("auth".into()), Some("users".into()));
        let good = strict.issue_access(&user(3));
        assert_eq!(strict.verify_access(good.expose_secret()), Ok(user(3)));
        let lax = TokenCodec::new(&secret, None, None).issue_access(&user(3));
        assert_eq!(strict.verify_access(lax.expose_secret()), Err(InvalidToken));
    }

    #[test]
    fn a_remembered_token_is_accepted_only_as_sent_and_while_valid() {
        let codec = codec();
        let token = codec.issue_access(&user(7));
        let token = token.expose_secret();
        assert_eq!(codec.verify_access(token), Ok(user(7)));
        assert_eq!(codec.remembered().len(), 1);
        assert_eq!(codec.verify_access(token), Ok(user(7)), "from memory");
        // A token one byte away from a remembered one is verified in full, and refused.
        let signature = token.rfind('.').unwrap() + 1;
        let first = &token[signature..=signature];
        let tampered = format!(
            "{}{}{}",
            &token[..signature],
            if first == "A" { "B" } else { "A" },
            &token[signature + 1..]
        );
        assert_eq!(codec.verify_access(&tampered), Err(InvalidToken));
        // Refresh tokens are never remembered, nor accepted.
        let session = SessionClaims {
            id: "s".into(),
            family: "f".into(),
        };
        let refresh = codec.issue_refresh(UserId(7), &session);
        assert_eq!(
            codec.verify_access(refresh.expose_secret()),
            Err(InvalidToken)
        );
        assert_eq!(codec.remembered().len(), 1);
        // Another secret (a reload makes a new codec) remembers nothing.
        let other = TokenCodec::new(&SecretString::from("another-secret"), None, None);
        assert_eq!(other.verify_access(token), Err(InvalidToken));
    }

    #[test]
    fn a_remembered_token_expires_as_a_verified_one_does() {
        let known = Remembered {
            principal: user(1),
            expires_at: 1_000,
            not_before: Some(900),
        };
        assert!(!known.valid_at(899));
        assert!(known.valid_at(900));
        assert!(
            known.valid_at(1_000),
            "exp is the last valid second, as jsonwebtoken has it"
        );
        assert!(!known.valid_at(1_001));
        // Past its expiry, a remembered token is verified in full again, and refused.
        let codec = codec();
        let token = codec.issue_with_expiry(
            &user(1),
            TokenKind::Access,
            chrono::Utc::now().timestamp() + 60,
        );
        let token = token.expose_secret();
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        codec.remembered().insert(
            digest,
            Remembered {
                principal: user(2),
                expires_at: chrono::Utc::now().timestamp() - 1,
                not_before: None,
            },
        );
        assert_eq!(codec.verify_access(token), Ok(user(1)), "verified anew");
    }

    #[test]
    fn the_memory_of_tokens_is_bounded() {
        let codec = codec();
        let now = chrono::Utc::now().timestamp();
        for n in 0..REMEMBERED_TOKENS {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(n as u64).to_le_bytes());
            let expires_at = if n % 2 == 0 { now - 1 } else { now + 60 };
            codec.remember(
                digest,
                Remembered {
                    principal: user(1),
                    expires_at,
                    not_before: None,
                },
                now,
            );
        }
        assert_eq!(codec.remembered().len(), REMEMBERED_TOKENS);
        codec.remember(
            [0xff; 32],
            Remembered {
                principal: user(1),
                expires_at: now + 60,
                not_before: None,
            },
            now,
        );
        assert_eq!(
            codec.remembered().len(),
            REMEMBERED_TOKENS / 2 + 1,
            "full: the expired ones were dropped"
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        assert!(!format!("{:?}", codec()).contains("test-secret"));
    }
}
