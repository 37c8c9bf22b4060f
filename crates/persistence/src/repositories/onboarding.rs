//! `OnboardingRepository` on `onboarding_progress`.

use diesel::prelude::*;
use serde_json::Value;
use user_service_domain::ports::OnboardingRepository;
use user_service_domain::{OnboardingProgress, RepositoryError, UserId};

use super::OnboardingStore;
use crate::error::Failure;
use crate::schema::onboarding_progress as op;
use crate::sql_types::{DbJson, DbTime};
use crate::upsert::{conflict_clause, OnConflict};

conflict_clause!(
    /// Replaces the stored progress, keeping `created_at`.
    ReplaceProgress = " ON CONFLICT (user_id) DO UPDATE SET current_step = excluded.current_step, \
        completed_steps = excluded.completed_steps, restarted_at = excluded.restarted_at, \
        updated_at = excluded.updated_at"
);

impl OnboardingRepository for OnboardingStore {
    fn get(&self, user: UserId) -> Result<Option<OnboardingProgress>, RepositoryError> {
        self.db.run("read onboarding progress", |conn| {
            let row: Option<(String, DbJson, Option<DbTime>, DbTime)> = op::table
                .filter(op::user_id.eq(user.0))
                .select((
                    op::current_step,
                    op::completed_steps,
                    op::restarted_at,
                    op::updated_at,
                ))
                .first(conn)
                .optional()?;
            row.map(|(current_step, steps, restarted_at, updated_at)| {
                Ok(OnboardingProgress {
                    current_step,
                    completed_steps: steps_of(steps.0)?,
                    restarted_at: restarted_at.map(|t| t.0),
                    updated_at: Some(updated_at.0),
                })
            })
            .transpose()
        })
    }

    fn save(&self, user: UserId, progress: &OnboardingProgress) -> Result<(), RepositoryError> {
        let now = DbTime::now();
        let steps = DbJson(Value::Array(
            progress
                .completed_steps
                .iter()
                .cloned()
                .map(Value::String)
                .collect(),
        ));
        self.db.run("store onboarding progress", |conn| {
            OnConflict::<_, ReplaceProgress>::new(diesel::insert_into(op::table).values((
                op::user_id.eq(user.0),
                op::current_step.eq(&progress.current_step),
                op::completed_steps.eq(steps),
                op::restarted_at.eq(progress.restarted_at.map(DbTime::new)),
                op::created_at.eq(now),
                op::updated_at.eq(progress.updated_at.map_or(now, DbTime::new)),
            )))
            .execute(conn)?;
            Ok(())
        })
    }
}

fn steps_of(json: Value) -> Result<Vec<String>, Failure> {
    let invalid =
        || RepositoryError::Other("stored onboarding steps are not a list of strings".into());
    match json {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(step) => Ok(step),
                _ => Err(invalid().into()),
            })
            .collect(),
        _ => Err(invalid().into()),
    }
}
