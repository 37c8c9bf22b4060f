//! Capabilities and the rule deciding what each action requires.

use std::collections::BTreeSet;
use std::fmt;

pub use crate::error::AccessDenied;
use crate::principal::Principal;
use crate::user::UserId;

/// A capability code, as the platform's entitlements service names it (`can.use_users`, ...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(String);

impl Capability {
    /// The dashboard's default capability: use one's own profile and credentials.
    pub const USE_USERS: &'static str = "can.use_users";
    /// The operator capability: manage users and other accounts' credentials.
    pub const MANAGE_USERS: &'static str = "can.manage_users";
    /// What a user must hold for the platform's order router to trade with its stored keys.
    pub const ROUTE_ORDERS: &'static str = "can.route_orders";
    /// Every capability this service acts on.
    pub const KNOWN: [&'static str; 3] = [Self::USE_USERS, Self::MANAGE_USERS, Self::ROUTE_ORDERS];

    /// Whether this service acts on the capability (others may still be stored, for other
    /// services of the platform that read the same entitlements).
    pub fn is_known(&self) -> bool {
        Self::KNOWN.contains(&self.0.as_str())
    }

    /// `can.use_users`.
    pub fn use_users() -> Self {
        Self(Self::USE_USERS.to_owned())
    }

    /// `can.manage_users`.
    pub fn manage_users() -> Self {
        Self(Self::MANAGE_USERS.to_owned())
    }

    /// `can.route_orders`.
    pub fn route_orders() -> Self {
        Self(Self::ROUTE_ORDERS.to_owned())
    }

    /// A capability from its code; `None` when the code is blank or has characters other than
    /// ASCII letters, digits, `.`, `_` and `-`.
    pub fn parse(code: &str) -> Option<Self> {
        let code = code.trim();
        let valid = !code.is_empty()
            && code.len() <= 128
            && code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        valid.then(|| Self(code.to_owned()))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The capabilities a user holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
// Shared: a cached set is handed to every request without copying it.
pub struct Capabilities(std::sync::Arc<BTreeSet<Capability>>);

impl Capabilities {
    /// No capability.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether `capability` is held.
    pub fn holds(&self, capability: &Capability) -> bool {
        self.0.contains(capability)
    }

    /// Adds a capability.
    pub fn insert(&mut self, capability: Capability) {
        std::sync::Arc::make_mut(&mut self.0).insert(capability);
    }

    /// Removes a capability.
    pub fn remove(&mut self, capability: &Capability) {
        std::sync::Arc::make_mut(&mut self.0).remove(capability);
    }

    /// The held capabilities, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Capability> {
        self.0.iter()
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<T: IntoIterator<Item = Capability>>(iter: T) -> Self {
        Self(std::sync::Arc::new(iter.into_iter().collect()))
    }
}

/// What an actor wants to do; each action requires a set of capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Read or change one's own profile, preferences, onboarding or broker credentials.
    OwnAccount,
    /// Read or change another account's broker credentials.
    OtherAccountCredentials,
    /// Create, list, change or delete other users.
    UserAdministration,
    /// What any verified user may do for itself without a capability (activate itself, read
    /// its sign-in profile).
    RegisterSelf,
    /// Register a profile (`POST /users/register`): any verified user, for itself, and any
    /// service principal, for a new user.
    Register,
    /// Have a broker request signed with a trader's stored key: platform services only, those
    /// `SIGNING_SERVICES` lists ([`crate::signing::SigningServices::authorize`] decides; the
    /// trader must hold `can.route_orders`).
    SignBrokerRequest,
}

impl Action {
    /// The capabilities this action requires, in the order they are checked.
    pub fn required(self) -> &'static [&'static str] {
        match self {
            Self::OwnAccount => &[Capability::USE_USERS],
            Self::OtherAccountCredentials | Self::UserAdministration => {
                &[Capability::USE_USERS, Capability::MANAGE_USERS]
            }
            Self::RegisterSelf | Self::Register | Self::SignBrokerRequest => &[],
        }
    }

    /// Whether a service principal may take this action.
    pub fn admits_services(self) -> bool {
        matches!(self, Self::Register | Self::SignBrokerRequest)
    }
}

/// Decides whether `held` allows `action`.
///
/// The dashboard capability is checked first, so that an account without it gets the same answer
/// on every route, then the operator capability.
pub fn authorize(held: &Capabilities, action: Action) -> Result<(), AccessDenied> {
    for code in action.required() {
        if !held.0.iter().any(|c| c.as_str() == *code) {
            return Err(if *code == Capability::USE_USERS {
                AccessDenied::MissingCapabilities((*code).to_owned())
            } else {
                AccessDenied::MissingCapability((*code).to_owned())
            });
        }
    }
    Ok(())
}

/// Decides whether `principal`, holding `held`, may take `action`: a service principal holds no
/// user capability and may only take the actions that admit services.
pub fn authorize_principal(
    principal: &Principal,
    held: &Capabilities,
    action: Action,
) -> Result<(), AccessDenied> {
    match principal {
        Principal::Service(_) if action.admits_services() => Ok(()),
        Principal::Service(_) => Err(AccessDenied::ServicePrincipal),
        Principal::User(_) => authorize(held, action),
    }
}

/// Whether `actor` may act on `target`'s credentials, and which action that is.
pub fn credential_action(actor: UserId, target: UserId) -> Action {
    if actor == target {
        Action::OwnAccount
    } else {
        Action::OtherAccountCredentials
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(codes: &[&str]) -> Capabilities {
        codes.iter().filter_map(|c| Capability::parse(c)).collect()
    }

    #[test]
    fn own_account_needs_use_users() {
        assert!(authorize(&caps(&["can.use_users"]), Action::OwnAccount).is_ok());
        assert_eq!(
            authorize(&caps(&[]), Action::OwnAccount)
                .unwrap_err()
                .to_string(),
            "Missing capabilities: can.use_users"
        );
    }

    #[test]
    fn operator_actions_need_both_capabilities() {
        let both = caps(&["can.use_users", "can.manage_users"]);
        assert!(authorize(&both, Action::OtherAccountCredentials).is_ok());
        assert!(authorize(&both, Action::UserAdministration).is_ok());
        assert_eq!(
            authorize(&caps(&["can.use_users"]), Action::UserAdministration)
                .unwrap_err()
                .to_string(),
            "Missing capability: can.manage_users"
        );
        assert_eq!(
            authorize(
                &caps(&["can.manage_users"]),
                Action::OtherAccountCredentials
            )
            .unwrap_err()
            .to_string(),
            "Missing capabilities: can.use_users"
        );
    }

    #[test]
    fn registering_needs_nothing() {
        assert!(authorize(&Capabilities::none(), Action::RegisterSelf).is_ok());
        assert!(authorize(&Capabilities::none(), Action::Register).is_ok());
    }

    #[test]
    fn a_service_may_only_register() {
        let service = crate::Principal::Service(crate::ServiceName::parse("auth-service").unwrap());
        let all = caps(&["can.use_users", "can.manage_users"]);
        assert!(authorize_principal(&service, &all, Action::Register).is_ok());
        for action in [
            Action::OwnAccount,
            Action::RegisterSelf,
            Action::UserAdministration,
            Action::OtherAccountCredentials,
        ] {
            assert_eq!(
                authorize_principal(&service, &all, action),
                Err(AccessDenied::ServicePrincipal),
                "{action:?}"
            );
        }
        let user = crate::Principal::User(UserId(1));
        assert!(authorize_principal(&user, &Capabilities::none(), Action::Register).is_ok());
    }

    #[test]
    fn acting_on_someone_else_is_an_operator_action() {
        assert_eq!(credential_action(UserId(1), UserId(1)), Action::OwnAccount);
        assert_eq!(
            credential_action(UserId(1), UserId(2)),
            Action::OtherAccountCredentials
        );
    }

    #[test]
    fn capability_codes_are_checked() {
        assert!(Capability::parse("can.trade-x_1").is_some());
        assert!(Capability::parse("").is_none());
        assert!(Capability::parse("can use").is_none());
    }
}
