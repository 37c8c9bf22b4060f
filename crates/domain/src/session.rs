//! Sign-in sessions: one stored row per refresh token this service issued, so that every replica
//! agrees on which refresh tokens still work.
//!
//! A session belongs to a family: signing in starts a family, each refresh rotates the session
//! (the presented one is marked replaced, a new one of the same family is stored). Presenting a
//! replaced session again means the token was copied: the whole family is revoked. Signing out
//! revokes the family; a password change revokes every family of the user.

use chrono::{DateTime, Utc};

use crate::user::UserId;

/// A session to store: its id and family are the refresh token's `jti` and `fam` claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Session id (random, unique).
    pub id: String,
    /// Family the session belongs to (the id of the sign-in that started it).
    pub family: String,
    /// Whose session it is.
    pub user: UserId,
    /// When its refresh token expires.
    pub expires_at: DateTime<Utc>,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Session id.
    pub id: String,
    /// Family.
    pub family: String,
    /// Whose session it is.
    pub user: UserId,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// When its refresh token expires.
    pub expires_at: DateTime<Utc>,
    /// When it was rotated (its refresh token exchanged for a new pair).
    pub replaced_at: Option<DateTime<Utc>>,
    /// When it was revoked (sign-out, reuse detected, password change).
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a stored session allows, at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Its refresh token may be exchanged once.
    Live,
    /// Already exchanged: presenting it again is reuse.
    Replaced,
    /// Ended.
    Revoked,
    /// Past its expiry.
    Expired,
}

impl Session {
    /// The state at `now`: revoked wins over replaced, which wins over expired.
    pub fn state(&self, now: DateTime<Utc>) -> SessionState {
        if self.revoked_at.is_some() {
            SessionState::Revoked
        } else if self.replaced_at.is_some() {
            SessionState::Replaced
        } else if self.expires_at <= now {
            SessionState::Expired
        } else {
            SessionState::Live
        }
    }

    /// Whether a refresh token claiming `user`, `id` and `family` is this session's.
    pub fn matches(&self, user: UserId, family: &str) -> bool {
        self.user == user && self.family == family
    }
}

/// The session a presented refresh token claims (from its verified `sub`, `jti`, `fam`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedSession {
    /// The token's subject.
    pub user: UserId,
    /// Its `jti`.
    pub id: String,
    /// Its `fam`.
    pub family: String,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The session was rotated: the new one is stored, issue its pair.
    Rotated,
    /// Unknown, expired, revoked or someone else's session: refused.
    Refused,
    /// The session had already been rotated (or a concurrent refresh won): the whole family
    /// was revoked, refused.
    ReuseDetected,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use chrono::{Duration, TimeZone};

    use super::*;

    fn session() -> Session {
        let t = Utc.with_ymd_and_hms(2026, 12, 4, 0, 0, 0).unwrap();
        Session {
            id: "s".into(),
            family: "f".into(),
            user: UserId(1),
            created_at: t,
            expires_at: t + Duration::days(7),
            replaced_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn states_in_order_of_precedence() {
        let mut s = session();
        let now = s.created_at + Duration::hours(1);
        assert_eq!(s.state(now), SessionState::Live);
        assert_eq!(s.state(s.expires_at), SessionState::Expired);
        s.replaced_at = Some(now);
        assert_eq!(s.state(now), SessionState::Replaced);
        s.revoked_at = Some(now);
        assert_eq!(s.state(now), SessionState::Revoked);
    }

    #[test]
    fn a_session_matches_only_its_user_and_family() {
        let s = session();
        assert!(s.matches(UserId(1), "f"));
        assert!(!s.matches(UserId(2), "f"));
        assert!(!s.matches(UserId(1), "g"));
    }
}
