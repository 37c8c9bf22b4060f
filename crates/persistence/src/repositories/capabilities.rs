//! `CapabilityRepository` on `user_capabilities`.

use diesel::prelude::*;
use user_service_domain::ports::CapabilityRepository;
use user_service_domain::{Capability, RepositoryError, UserId};

use super::CapabilityStore;
use crate::schema::user_capabilities as caps;
use crate::upsert::{conflict_clause, OnConflict};

conflict_clause!(
    /// A second grant or revocation replaces the first.
    ReplaceGrant = " ON CONFLICT (user_id, capability) DO UPDATE SET granted = excluded.granted"
);

impl CapabilityRepository for CapabilityStore {
    fn overrides(&self, user: UserId) -> Result<Vec<(Capability, bool)>, RepositoryError> {
        self.db.run("read capabilities", |conn| {
            let rows: Vec<(String, bool)> = caps::table
                .filter(caps::user_id.eq(user.0))
                .order(caps::capability.asc())
                .select((caps::capability, caps::granted))
                .load(conn)?;
            rows.into_iter()
                .map(|(code, granted)| {
                    Capability::parse(&code)
                        .map(|c| (c, granted))
                        .ok_or_else(|| {
                            RepositoryError::Other(format!(
                                "user {user} has an invalid stored capability code"
                            ))
                            .into()
                        })
                })
                .collect()
        })
    }

    fn set(
        &self,
        user: UserId,
        capability: &Capability,
        granted: bool,
    ) -> Result<(), RepositoryError> {
        self.db.run("store capability", |conn| {
            OnConflict::<_, ReplaceGrant>::new(diesel::insert_into(caps::table).values((
                caps::user_id.eq(user.0),
                caps::capability.eq(capability.as_str()),
                caps::granted.eq(granted),
            )))
            .execute(conn)?;
            Ok(())
        })
    }
}
