//! Users, their profile fields, preferences and onboarding progress.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::limits::{
    DEFAULT_PAGE_LIMIT, EMAIL_MAX_CHARS, MAX_PAGE_LIMIT, NAME_MAX_CHARS, PHONE_MAX_CHARS,
};

/// A user id (the JWT's `sub`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl UserId {
    /// A user id from its decimal text, when within `1..=MAX_USER_ID`.
    pub fn parse_id(text: &str) -> Option<Self> {
        text.trim()
            .parse::<i64>()
            .ok()
            .filter(|id| (1..=crate::limits::MAX_USER_ID).contains(id))
            .map(Self)
    }

    /// Whether the id is within `1..=MAX_USER_ID`.
    pub fn is_valid(self) -> bool {
        (1..=crate::limits::MAX_USER_ID).contains(&self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A normalised e-mail address: trimmed, lower-cased, `local@domain`, at most 255 characters.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Validates and normalises an address.
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        if crate::text::has_forbidden_char(raw) {
            return Err(ValidationError::Invalid {
                field: "email",
                reason: "must not contain control characters",
            });
        }
        let email = raw.trim().to_lowercase();
        // The limit holds for what was sent (the documented maxLength, white space included) and
        // for what is stored (lower-casing may lengthen a string: `İ` becomes two characters).
        if raw.chars().count() > EMAIL_MAX_CHARS || email.chars().count() > EMAIL_MAX_CHARS {
            return Err(ValidationError::TooLong {
                field: "email",
                max: EMAIL_MAX_CHARS,
            });
        }
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
                    && !email.chars().any(char::is_whitespace)
            }
            None => false,
        };
        if !valid {
            return Err(ValidationError::Invalid {
                field: "email",
                reason: "not a valid e-mail address",
            });
        }
        Ok(Self(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user profile as stored (never the password hash).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// E-mail address.
    pub email: Email,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// Whether the user accepted marketing e-mail.
    pub marketing_opt_in: bool,
    /// Whether the account is activated.
    pub is_active: bool,
    /// Whether the account is a superuser (kept from the original schema).
    pub is_superuser: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Profile fields of a new user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Id to create the user with (the platform's id when a token's subject registers its
    /// profile); `None` lets the database assign one.
    pub id: Option<UserId>,
    /// E-mail address (unique).
    pub email: Email,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Phone number.
    pub phone: Option<String>,
    /// Marketing consent.
    pub marketing_opt_in: bool,
    /// Whether the account starts active.
    pub is_active: bool,
}

impl NewUser {
    /// A new user with only an e-mail address, inactive.
    pub fn with_email(email: Email) -> Self {
        Self {
            id: None,
            email,
            first_name: None,
            last_name: None,
            phone: None,
            marketing_opt_in: false,
            is_active: false,
        }
    }
}

/// Changes to a profile; `None` leaves a field unchanged, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    /// New e-mail address.
    pub email: Option<Email>,
    /// New first name.
    pub first_name: Option<Option<String>>,
    /// New last name.
    pub last_name: Option<Option<String>>,
    /// New phone number.
    pub phone: Option<Option<String>>,
    /// New marketing consent.
    pub marketing_opt_in: Option<bool>,
    /// New activation state (operators only).
    pub is_active: Option<bool>,
}

/// Checks a free-text profile field against its limit; blank becomes `None`.
pub fn profile_field(
    field: &'static str,
    value: Option<String>,
) -> Result<Option<String>, ValidationError> {
    let max = match field {
        "phone" => PHONE_MAX_CHARS,
        _ => NAME_MAX_CHARS,
    };
    if value
        .as_deref()
        .is_some_and(crate::text::has_forbidden_char)
    {
        return Err(ValidationError::Invalid {
            field,
            reason: "must not contain control characters",
        });
    }
    // The limit counts what was sent (the documented maxLength), white space included.
    if value.as_deref().is_some_and(|v| v.chars().count() > max) {
        return Err(ValidationError::TooLong { field, max });
    }
    match value.map(|v| v.trim().to_owned()) {
        Some(v) if crate::text::has_forbidden_char(&v) => Err(ValidationError::Invalid {
            field,
            reason: "must not contain control characters",
        }),
        Some(v) if v.is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// A page request: `limit` in 1..=200 (default 50), `offset` ≥ 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Rows per page.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u64,
}

impl Page {
    /// Validates a page request.
    pub fn new(limit: Option<u32>, offset: Option<u64>) -> Result<Self, ValidationError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE_LIMIT);
        if limit == 0 || limit > MAX_PAGE_LIMIT {
            return Err(ValidationError::Invalid {
                field: "limit",
                reason: "must be between 1 and 200",
            });
        }
        let offset = offset.unwrap_or(0);
        if offset > i64::MAX as u64 {
            return Err(ValidationError::Invalid {
                field: "offset",
                reason: "must be between 0 and 9223372036854775807",
            });
        }
        Ok(Self { limit, offset })
    }
}

impl Default for Page {
    fn default() -> Self {
        Self {
            limit: DEFAULT_PAGE_LIMIT,
            offset: 0,
        }
    }
}

/// Checks a preferences document before it is stored: any JSON object, except that no key or
/// string may hold U+0000, which PostgreSQL's `jsonb` cannot store (refused on every backend
/// alike, so that both behave the same).
pub fn check_preferences(value: &serde_json::Value) -> Result<(), ValidationError> {
    fn holds_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(text) => text.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(holds_nul),
            serde_json::Value::Object(map) => map
                .iter()
                .any(|(key, item)| key.contains('\0') || holds_nul(item)),
            _ => false,
        }
    }
    if holds_nul(value) {
        return Err(ValidationError::Invalid {
            field: "preferences",
            reason: "must not contain the character U+0000",
        });
    }
    Ok(())
}

/// Onboarding steps, in order.
pub const ONBOARDING_STEPS: [&str; 3] = ["account-profile", "api-keys", "execution-mode"];

/// A user's onboarding progress.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnboardingProgress {
    /// The first step not completed yet, or the last step when all are.
    pub current_step: String,
    /// Completed steps, in the order of [`ONBOARDING_STEPS`].
    pub completed_steps: Vec<String>,
    /// When the user last restarted the onboarding.
    pub restarted_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: Option<DateTime<Utc>>,
}

impl OnboardingProgress {
    /// Progress of a user who has not started.
    pub fn start() -> Self {
        Self {
            current_step: ONBOARDING_STEPS[0].to_owned(),
            completed_steps: Vec::new(),
            restarted_at: None,
            updated_at: None,
        }
    }

    /// Marks `step` completed; refuses an unknown step.
    pub fn complete(&mut self, step: &str) -> Result<(), ValidationError> {
        if !ONBOARDING_STEPS.contains(&step) {
            return Err(ValidationError::Invalid {
                field: "step",
                reason: "unknown onboarding step",
            });
        }
        if !self.completed_steps.iter().any(|s| s == step) {
            self.completed_steps.push(step.to_owned());
        }
        self.completed_steps.sort_by_key(|s| {
            ONBOARDING_STEPS
                .iter()
                .position(|known| known == s)
                .unwrap_or(usize::MAX)
        });
        self.current_step = ONBOARDING_STEPS
            .iter()
            .find(|s| !self.completed_steps.iter().any(|c| c == *s))
            .unwrap_or(&ONBOARDING_STEPS[ONBOARDING_STEPS.len() - 1])
            .to_string();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse(" Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in ["", "ann", "@example.com", "ann@example", "a b@example.com"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
        // 255 characters sent, counted before trimming (the documented maxLength) and after
        // lower-casing (what is stored: `İ` lower-cases to two characters).
        let local = "a".repeat(243);
        assert!(Email::parse(&format!("{local}@example.com")).is_ok());
        assert!(Email::parse(&format!("\u{2003}{local}@example.com")).is_err());
        assert!(Email::parse(&format!("{}@example.com", "\u{130}".repeat(130))).is_err());
        for control in [
            "a\u{0}@example.com",
            "a@exa\u{7}mple.com",
            "a@example.com\u{202e}",
        ] {
            assert!(Email::parse(control).is_err(), "{control:?}");
        }
    }

    #[test]
    fn page_limits_are_explicit() {
        assert_eq!(Page::new(None, None).unwrap(), Page::default());
        assert!(Page::new(Some(0), None).is_err());
        assert!(Page::new(Some(201), None).is_err());
        assert_eq!(Page::new(Some(200), Some(5)).unwrap().offset, 5);
        assert!(Page::new(None, Some(i64::MAX as u64)).is_ok());
        assert!(Page::new(None, Some(i64::MAX as u64 + 1)).is_err());
    }

    #[test]
    fn onboarding_moves_to_the_first_missing_step() {
        let mut progress = OnboardingProgress::start();
        progress.complete("api-keys").unwrap();
        assert_eq!(progress.current_step, "account-profile");
        progress.complete("account-profile").unwrap();
        assert_eq!(progress.current_step, "execution-mode");
        assert_eq!(progress.completed_steps, ["account-profile", "api-keys"]);
        assert!(progress.complete("unknown").is_err());
    }

    #[test]
    fn preferences_refuse_nul_anywhere() {
        assert!(check_preferences(&serde_json::json!({"a": [1, "x"], "b": {"c": null}})).is_ok());
        for bad in [
            serde_json::json!({"a": "x\u{0}"}),
            serde_json::json!({"a": ["\u{0}"]}),
            serde_json::json!({"\u{0}": 1}),
        ] {
            assert!(check_preferences(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn profile_fields_have_limits() {
        assert_eq!(
            profile_field("first_name", Some("  ".into())).unwrap(),
            None
        );
        assert!(profile_field("phone", Some("1".repeat(33))).is_err());
        assert!(profile_field("last_name", Some("x".repeat(120))).is_ok());
        // Counted as sent, white space included (the documented maxLength).
        assert!(profile_field("last_name", Some(format!(" {}", "x".repeat(120)))).is_err());
        assert!(profile_field("first_name", Some("Ann\u{0}".into())).is_err());
        assert!(profile_field("phone", Some("+33\n1".into())).is_err());
    }
}
