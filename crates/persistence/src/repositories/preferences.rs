//! `PreferenceRepository` on `user_preferences`.

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use user_service_domain::ports::PreferenceRepository;
use user_service_domain::{RepositoryError, UserId};

use super::PreferenceStore;
use crate::connection::on_backend;
use crate::schema::user_preferences as prefs;
use crate::sql_types::DbJson;

#[async_trait]
impl PreferenceRepository for PreferenceStore {
    async fn get(&self, user: UserId) -> Result<Value, RepositoryError> {
        self.db
            .run("read preferences", async |conn| {
                let stored: Option<DbJson> = on_backend!(conn, |c| {
                    prefs::table
                        .filter(prefs::user_id.eq(user.0))
                        .select(prefs::preferences)
                        .first(c)
                        .await
                        .optional()
                })?;
                Ok(stored.map_or_else(|| Value::Object(Default::default()), |json| json.0))
            })
            .await
    }

    async fn put(&self, user: UserId, preferences: &Value) -> Result<Value, RepositoryError> {
        if !preferences.is_object() {
            return Err(RepositoryError::other(
                "store preferences",
                "preferences must be a JSON object",
            ));
        }
        let document = DbJson(preferences.clone());
        self.db
            .run("store preferences", async |conn| {
                on_backend!(conn, |c| {
                    diesel::insert_into(prefs::table)
                        .values((prefs::user_id.eq(user.0), prefs::preferences.eq(&document)))
                        .on_conflict(prefs::user_id)
                        .do_update()
                        .set(prefs::preferences.eq(excluded(prefs::preferences)))
                        .execute(c)
                        .await
                })?;
                Ok(preferences.clone())
            })
            .await
    }
}
