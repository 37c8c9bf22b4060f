//! JWT verification and issuing (SPEC §5): HS256, `sub` = user id, `exp` required, refresh tokens
//! refused on API routes, optional `iss` / `aud` checks.

use std::fmt;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use user_service_domain::UserId;

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
    /// Only exchanges for a new access token at `/auth/refresh`.
    Refresh,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: serde_json::Value,
    exp: i64,
    iat: Option<i64>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    kind: Option<TokenKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

/// A verified token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The user the token speaks for.
    pub user_id: UserId,
    /// Access or refresh.
    pub kind: TokenKind,
}

/// The token is missing, malformed, badly signed, expired or of the wrong kind. Carries no
/// detail on purpose: every case answers `401 Invalid token`.
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
}

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
        }
    }

    /// Verifies signature, algorithm, expiry and the optional `iss` / `aud`.
    pub fn verify(&self, token: &str) -> Result<Verified, InvalidToken> {
        let data =
            decode::<Claims>(token, &self.decoding, &self.validation).map_err(|_| InvalidToken)?;
        let user_id = match &data.claims.sub {
            serde_json::Value::String(s) => s.trim().parse::<i64>().map_err(|_| InvalidToken)?,
            serde_json::Value::Number(n) => n.as_i64().ok_or(InvalidToken)?,
            _ => return Err(InvalidToken),
        };
        if user_id <= 0 {
            return Err(InvalidToken);
        }
        Ok(Verified {
            user_id: UserId(user_id),
            kind: data.claims.kind.unwrap_or(TokenKind::Access),
        })
    }

    /// Verifies a token that must grant API access (refresh tokens are refused).
    pub fn verify_access(&self, token: &str) -> Result<UserId, InvalidToken> {
        match self.verify(token)? {
            Verified {
                user_id,
                kind: TokenKind::Access,
            } => Ok(user_id),
            _ => Err(InvalidToken),
        }
    }

    /// Issues a token of `kind` for `user`, valid for the kind's lifetime.
    pub fn issue(&self, user: UserId, kind: TokenKind) -> SecretString {
        let now = chrono::Utc::now().timestamp();
        let ttl = match kind {
            TokenKind::Access => ACCESS_TOKEN_TTL_SECS,
            TokenKind::Refresh => REFRESH_TOKEN_TTL_SECS,
        };
        self.issue_with_expiry(user, kind, now + ttl)
    }

    /// Issues a token expiring at `exp` (seconds since the epoch); tests use it for expired
    /// tokens.
    pub fn issue_with_expiry(&self, user: UserId, kind: TokenKind, exp: i64) -> SecretString {
        let claims = Claims {
            sub: serde_json::Value::String(user.0.to_string()),
            exp,
            iat: Some(chrono::Utc::now().timestamp()),
            kind: Some(kind),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        // Encoding HS256 claims with an HMAC key cannot fail.
        SecretString::from(
            encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> TokenCodec {
        TokenCodec::new(
            &SecretString::from("test-secret-test-secret-32-bytes!"),
            None,
            None,
        )
    }

    #[test]
    fn issued_access_token_verifies() {
        let codec = codec();
        let token = codec.issue(UserId(42), TokenKind::Access);
        assert_eq!(codec.verify_access(token.expose_secret()), Ok(UserId(42)));
    }

    #[test]
    fn refresh_token_is_refused_for_api_access() {
        let codec = codec();
        let token = codec.issue(UserId(42), TokenKind::Refresh);
        assert_eq!(
            codec.verify_access(token.expose_secret()),
            Err(InvalidToken)
        );
    }

    #[test]
    fn expired_token_is_refused() {
        let codec = codec();
        let token = codec.issue_with_expiry(UserId(1), TokenKind::Access, 1_000);
        assert_eq!(
            codec.verify_access(token.expose_secret()),
            Err(InvalidToken)
        );
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let other = TokenCodec::new(&SecretString::from("another-secret"), None, None);
        let token = other.issue(UserId(1), TokenKind::Access);
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
        let good = strict.issue(UserId(3), TokenKind::Access);
        assert_eq!(strict.verify_access(good.expose_secret()), Ok(UserId(3)));
        let lax = TokenCodec::new(&secret, None, None).issue(UserId(3), TokenKind::Access);
        assert_eq!(strict.verify_access(lax.expose_secret()), Err(InvalidToken));
    }

    #[test]
    fn debug_hides_the_secret() {
        assert!(!format!("{:?}", codec()).contains("test-secret"));
    }
}
