//! Who a verified token speaks for: a user of this service, or another service of the platform.

use std::fmt;

use crate::limits::SERVICE_NAME_MAX_CHARS;
use crate::user::UserId;

/// The name of a platform service acting with its own token (`auth-service`, `order-router`):
/// an ASCII letter, then ASCII letters, digits, `.`, `_` and `-`, at most 64 characters (so it
/// is never mistaken for a user id).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(String);

impl ServiceName {
    /// Checks a name; `None` when it is not one.
    pub fn parse(raw: &str) -> Option<Self> {
        let valid = !raw.is_empty()
            && raw.len() <= SERVICE_NAME_MAX_CHARS
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && raw.starts_with(|c: char| c.is_ascii_alphabetic());
        valid.then(|| Self(raw.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceName({})", self.0)
    }
}

/// The subject of a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A user: `sub` is its id.
    User(UserId),
    /// A platform service: `sub` is its name. It holds no user capability.
    Service(ServiceName),
}

impl Principal {
    /// Reads a token's `sub`: an integer in `1..=MAX_USER_ID` is a user, a service name is a
    /// service; anything else (zero, a negative or too large number, other characters) is not a
    /// subject this service accepts.
    pub fn from_subject(sub: &str) -> Option<Self> {
        let sub = sub.trim();
        if !sub.is_empty() && sub.chars().all(|c| c.is_ascii_digit()) {
            return UserId::parse_id(sub).map(Self::User);
        }
        ServiceName::parse(sub).map(Self::Service)
    }

    /// The user, when the principal is one.
    pub fn user(&self) -> Option<UserId> {
        match self {
            Self::User(id) => Some(*id),
            Self::Service(_) => None,
        }
    }

    /// The `sub` claim that names this principal.
    pub fn subject(&self) -> String {
        match self {
            Self::User(id) => id.to_string(),
            Self::Service(name) => name.to_string(),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user {id}"),
            Self::Service(name) => write!(f, "service {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_USER_ID;

    #[test]
    fn digits_name_a_user_within_the_documented_range() {
        assert_eq!(
            Principal::from_subject("42"),
            Some(Principal::User(UserId(42)))
        );
        assert_eq!(
            Principal::from_subject(&MAX_USER_ID.to_string()),
            Some(Principal::User(UserId(MAX_USER_ID)))
        );
        for outside in ["0", "-1", "9223372036854775807", "99999999999999999999"] {
            assert_eq!(Principal::from_subject(outside), None, "{outside}");
        }
    }

    #[test]
    fn a_service_name_is_a_service() {
        assert_eq!(
            Principal::from_subject("auth-service"),
            Some(Principal::Service(
                ServiceName::parse("auth-service").unwrap()
            ))
        );
        for bad in ["", "a b", "svc/1", &"s".repeat(65), "é", "-1", "1x"] {
            assert_eq!(Principal::from_subject(bad), None, "{bad:?}");
        }
    }
}
