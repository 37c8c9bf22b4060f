//! `CapabilityRepository` on `user_capabilities`.

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use user_service_domain::ports::CapabilityRepository;
use user_service_domain::{Capability, RepositoryError, UserId};

use super::CapabilityStore;
use crate::connection::on_backend;
use crate::error::Failure;
use crate::schema::user_capabilities as caps;

#[async_trait]
impl CapabilityRepository for CapabilityStore {
    async fn overrides(&self, user: UserId) -> Result<Vec<(Capability, bool)>, RepositoryError> {
        self.db
            .run("read capabilities", async |conn| {
                let rows: Vec<(String, bool)> = on_backend!(conn, |c| {
                    caps::table
                        .filter(caps::user_id.eq(user.0))
                        .order(caps::capability.asc())
                        .select((caps::capability, caps::granted))
                        .load(c)
                        .await
                })?;
                rows.into_iter()
                    .map(|(code, granted)| {
                        Capability::parse(&code)
                            .map(|c| (c, granted))
                            .ok_or_else(|| {
                                Failure::corrupt(
                                    "read capabilities",
                                    format!("user {user} has an invalid stored capability code"),
                                )
                            })
                    })
                    .collect()
            })
            .await
    }

    async fn set(
        &self,
        user: UserId,
        capability: &Capability,
        granted: bool,
    ) -> Result<(), RepositoryError> {
        self.db
            .run("store capability", async |conn| {
                on_backend!(conn, |c| {
                    diesel::insert_into(caps::table)
                        .values((
                            caps::user_id.eq(user.0),
                            caps::capability.eq(capability.as_str()),
                            caps::granted.eq(granted),
                        ))
                        .on_conflict((caps::user_id, caps::capability))
                        .do_update()
                        .set(caps::granted.eq(excluded(caps::granted)))
                        .execute(c)
                        .await
                })?;
                Ok(())
            })
            .await
    }
}
