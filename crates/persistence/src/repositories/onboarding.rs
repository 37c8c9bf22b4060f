//! `OnboardingRepository` on `onboarding_progress`.

use async_trait::async_trait;
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use user_service_domain::ports::OnboardingRepository;
use user_service_domain::{OnboardingProgress, RepositoryError, UserId};

use super::OnboardingStore;
use crate::connection::on_backend;
use crate::error::Failure;
use crate::schema::onboarding_progress as op;
use crate::sql_types::{DbJson, DbTime};

#[async_trait]
impl OnboardingRepository for OnboardingStore {
    async fn get(&self, user: UserId) -> Result<Option<OnboardingProgress>, RepositoryError> {
        self.db
            .run("read onboarding progress", async |conn| {
                let row: Option<(String, DbJson, Option<DbTime>, DbTime)> =
                    on_backend!(conn, |c| {
                        op::table
                            .filter(op::user_id.eq(user.0))
                            .select((
                                op::current_step,
                                op::completed_steps,
                                op::restarted_at,
                                op::updated_at,
                            ))
                            .first(c)
                            .await
                            .optional()
                    })?;
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
            .await
    }

    async fn save(
        &self,
        user: UserId,
        progress: &OnboardingProgress,
    ) -> Result<(), RepositoryError> {
        let now = DbTime::now();
        let steps = DbJson(Value::Array(
            progress
                .completed_steps
                .iter()
                .cloned()
                .map(Value::String)
                .collect(),
        ));
        let restarted_at = progress.restarted_at.map(DbTime::new);
        let updated_at = progress.updated_at.map_or(now, DbTime::new);
        self.db
            .run("store onboarding progress", async |conn| {
                on_backend!(conn, |c| {
                    diesel::insert_into(op::table)
                        .values((
                            op::user_id.eq(user.0),
                            op::current_step.eq(&progress.current_step),
                            op::completed_steps.eq(&steps),
                            op::restarted_at.eq(restarted_at),
                            op::created_at.eq(now),
                            op::updated_at.eq(updated_at),
                        ))
                        .on_conflict(op::user_id)
                        .do_update()
                        .set((
                            op::current_step.eq(excluded(op::current_step)),
                            op::completed_steps.eq(excluded(op::completed_steps)),
                            op::restarted_at.eq(excluded(op::restarted_at)),
                            op::updated_at.eq(excluded(op::updated_at)),
                        ))
                        .execute(c)
                        .await
                })?;
                Ok(())
            })
            .await
    }
}

fn steps_of(json: Value) -> Result<Vec<String>, Failure> {
    let invalid = || {
        Failure::corrupt(
            "read onboarding progress",
            "stored onboarding steps are not a list of strings".into(),
        )
    };
    match json {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(step) => Ok(step),
                _ => Err(invalid()),
            })
            .collect(),
        _ => Err(invalid()),
    }
}
