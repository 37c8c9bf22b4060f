//! The domain's repository ports, one thin store per port, all sharing the [`Database`] pool.

mod audit;
mod capabilities;
mod credentials;
mod cutover;
mod onboarding;
mod preferences;
mod sessions;
mod throttle;
mod user_rows;
mod users;

use crate::database::Database;

macro_rules! store {
    ($(#[$doc:meta])* $name:ident, $accessor:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            db: Database,
        }

        impl $name {
            /// A store over `db`'s pool.
            pub fn new(db: Database) -> Self {
                Self { db }
            }
        }

        impl Database {
            #[doc = concat!("The [`", stringify!($name), "`] over this pool.")]
            pub fn $accessor(&self) -> $name {
                $name::new(self.clone())
            }
        }
    };
}

store!(
    /// Broker credentials (`user_broker_credentials`): implements `CredentialRepository`.
    CredentialStore,
    credentials
);
store!(
    /// The cut-over mode (`cutover_mode`): implements `CutoverRepository`.
    CutoverStore,
    cutover
);
store!(
    /// User profiles (`users`): implements `UserRepository`.
    UserStore,
    users
);
store!(
    /// User preferences (`user_preferences`): implements `PreferenceRepository`.
    PreferenceStore,
    preferences
);
store!(
    /// Onboarding progress (`onboarding_progress`): implements `OnboardingRepository`.
    OnboardingStore,
    onboarding
);
store!(
    /// Capability grants (`user_capabilities`): implements `CapabilityRepository`.
    CapabilityStore,
    capabilities
);
store!(
    /// Credential audit events (`credential_audit_events`): implements `AuditRepository`.
    AuditStore,
    audit
);
store!(
    /// Sign-in sessions (`auth_sessions`): implements `SessionRepository`.
    SessionStore,
    sessions
);
store!(
    /// Sign-in throttling buckets (`sign_in_throttle`): implements `ThrottleRepository`.
    ThrottleStore,
    throttle
);

/// `LIMIT`/`OFFSET` values from a page (offsets beyond `i64` are clamped: they match nothing).
pub(crate) fn limit_offset(page: user_service_domain::Page) -> (i64, i64) {
    (
        i64::from(page.limit),
        i64::try_from(page.offset).unwrap_or(i64::MAX),
    )
}

/// One page of `rows`, each turned into its domain value by `into_domain`, and the `total` count.
pub(crate) fn page_of<R, T>(
    total: i64,
    rows: Vec<R>,
    into_domain: impl FnMut(R) -> Result<T, crate::error::Failure>,
) -> Result<(Vec<T>, u64), crate::error::Failure> {
    let items = rows
        .into_iter()
        .map(into_domain)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, count(total)))
}

/// A count from `COUNT(*)`, never negative.
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
