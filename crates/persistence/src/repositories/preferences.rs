//! `PreferenceRepository` on `user_preferences`.

use diesel::prelude::*;
use serde_json::Value;
use user_service_domain::ports::PreferenceRepository;
use user_service_domain::{RepositoryError, UserId};

use super::PreferenceStore;
use crate::schema::user_preferences as prefs;
use crate::sql_types::DbJson;
use crate::upsert::{conflict_clause, OnConflict};

conflict_clause!(
    /// Replaces the stored document.
    ReplacePreferences = " ON CONFLICT (user_id) DO UPDATE SET preferences = excluded.preferences"
);

impl PreferenceRepository for PreferenceStore {
    fn get(&self, user: UserId) -> Result<Value, RepositoryError> {
        self.db.run("read preferences", |conn| {
            let stored: Option<DbJson> = prefs::table
                .filter(prefs::user_id.eq(user.0))
                .select(prefs::preferences)
                .first(conn)
                .optional()?;
            Ok(stored.map_or_else(|| Value::Object(Default::default()), |json| json.0))
        })
    }

    fn put(&self, user: UserId, preferences: &Value) -> Result<Value, RepositoryError> {
        if !preferences.is_object() {
            return Err(RepositoryError::Other(
                "preferences must be a JSON object".into(),
            ));
        }
        self.db.run("store preferences", |conn| {
            OnConflict::<_, ReplacePreferences>::new(diesel::insert_into(prefs::table).values((
                prefs::user_id.eq(user.0),
                prefs::preferences.eq(DbJson(preferences.clone())),
            )))
            .execute(conn)?;
            Ok(preferences.clone())
        })
    }
}
