//! The rule of the `local` entitlements provider (SPEC §5).

use crate::capability::{Capabilities, Capability};

/// Capabilities of a user who is not deleted, given its explicit grants and revocations: the
/// dashboard default `can.use_users`, plus grants, minus revocations.
pub fn local_capabilities(overrides: &[(Capability, bool)]) -> Capabilities {
    let mut held: Capabilities = std::iter::once(Capability::use_users()).collect();
    for (capability, granted) in overrides {
        if *granted {
            held.insert(capability.clone());
        } else {
            held.remove(capability);
        }
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_holds_the_dashboard_default() {
        assert!(local_capabilities(&[]).holds(&Capability::use_users()));
        assert!(!local_capabilities(&[]).holds(&Capability::manage_users()));
    }

    #[test]
    fn grants_add_and_revocations_withdraw() {
        let held = local_capabilities(&[
            (Capability::manage_users(), true),
            (Capability::use_users(), false),
        ]);
        assert!(held.holds(&Capability::manage_users()));
        assert!(!held.holds(&Capability::use_users()));
    }
}
