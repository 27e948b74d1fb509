//! Running one job: claim it, run its kind, record the outcome; retries with
//! backoff for transient errors, at once FAILED for permanent ones.
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::Utc;
use entity::job_run;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, sea_query::Expr,
};
use serde_json::Value;
use uuid::Uuid;

use super::{
    JobError, JobKind, JobMessage, JobQueue,
    enqueue::{AnalyzeParams, PersonaParams},
    status,
};
use crate::{analysis::DynModels, models::SharedModels, personas, search, sentiment::Thresholds};

/// What every job handler gets.
#[derive(Clone)]
pub struct JobContext {
    pub db: DatabaseConnection,
    pub queue: JobQueue,
    pub models: Option<SharedModels>,
    /// Where retrained models are written (`LINGXI_DATA_DIR/models`).
    pub data_dir: std::path::PathBuf,
    /// The model cache (training corpora live there too).
    pub models_dir: std::path::PathBuf,
    /// The persona search index, kept up to date after persona builds.
    pub search: crate::search::Search,
    /// How often a running job's process says it is alive (`heartbeat_at`).
    pub heartbeat: Duration,
}

/// Reports progress (throttled) and notices cancellation.
pub struct Progress {
    db: DatabaseConnection,
    job_id: Uuid,
    last: Mutex<Option<Instant>>,
    /// This phase covers `[offset, offset + scale]` of the whole job.
    offset: f64,
    scale: f64,
}

const PROGRESS_EVERY: Duration = Duration::from_millis(200);

impl Progress {
    pub fn new(db: DatabaseConnection, job_id: Uuid) -> Self {
        Self {
            db,
            job_id,
            last: Mutex::new(None),
            offset: 0.0,
            scale: 1.0,
        }
    }

    /// A later phase of the same job, covering `[offset, offset + scale]`.
    pub fn phase(&self, offset: f64, scale: f64) -> Self {
        Self {
            db: self.db.clone(),
            job_id: self.job_id,
            last: Mutex::new(None),
            offset,
            scale,
        }
    }

    /// Records `fraction` (0..1); `Err(Cancelled)` once the job was cancelled.
    ///
    /// # Errors
    /// `Cancelled`, or a database error.
    pub async fn set(&self, fraction: f64) -> Result<(), JobError> {
        let fraction = self.offset + self.scale * fraction.clamp(0.0, 1.0);
        {
            let mut last = self
                .last
                .lock()
                .map_err(|_| JobError::Transient(anyhow::anyhow!("progress lock")))?;
            if last.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) && fraction < 1.0 {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let updated = job_run::Entity::update_many()
            .col_expr(
                job_run::Column::Progress,
                Expr::value(fraction.clamp(0.0, 0.999)),
            )
            .col_expr(job_run::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(job_run::Column::Id.eq(self.job_id))
            .filter(job_run::Column::Status.eq(status::RUNNING))
            .exec(&self.db)
            .await?;
        if updated.rows_affected == 0 {
            return Err(JobError::Cancelled);
        }
        Ok(())
    }
}

/// Writes `heartbeat_at` of a running job every `ctx.heartbeat` until
/// dropped, so that a job whose process died is told from one that is
/// slow ([`super::lost`]). Not `updated_at`: subscribers would be woken.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(ctx: &JobContext, job_id: Uuid, attempt: i32) -> Self {
        let db = ctx.db.clone();
        let every = ctx.heartbeat;
        Heartbeat(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await; // the claim wrote the first
            loop {
                tick.tick().await;
                let beat = job_run::Entity::update_many()
                    .col_expr(job_run::Column::HeartbeatAt, Expr::value(Utc::now()))
                    .filter(job_run::Column::Id.eq(job_id))
                    .filter(job_run::Column::Attempts.eq(attempt))
                    .filter(job_run::Column::Status.eq(status::RUNNING))
                    .exec(&db)
                    .await;
                match beat {
                    Ok(r) if r.rows_affected == 0 => break, // cancelled, or taken over
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(job_id = %job_id, error = %e, "job heartbeat not written")
                    }
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Backoff before attempt `n + 1`: 2 s, 4 s, 8 s … at most 5 minutes.
pub fn backoff(attempt: i32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(attempt.clamp(1, 9) as u32).min(300))
}

/// The apalis handler: errors here are infrastructure errors (the job row
/// could not be read or written); apalis redelivers those.
pub async fn handle(
    msg: JobMessage,
    ctx: apalis::prelude::Data<JobContext>,
) -> Result<(), apalis::prelude::BoxDynError> {
    run(&ctx, &msg).await.map_err(Into::into)
}

/// Whether a delivery queued after `queued` attempts is the job's current
/// one: the job waits for it (QUEUED with as many attempts), or workers
/// died running it (RUNNING with more; apalis hands the entry on each time).
/// A QUEUED job with another count waits for another delivery: this one is
/// a copy, or one whose retry has been queued since. Entries without a
/// count are taken as current.
fn is_current(job: &job_run::Model, queued: Option<i32>) -> bool {
    match queued {
        None => true,
        Some(n) if job.status == status::QUEUED => job.attempts == n,
        Some(n) => job.status == status::RUNNING && job.attempts > n,
    }
}

/// Runs one delivery of a job.
///
/// # Errors
/// Database errors while claiming or recording the job.
pub async fn run(ctx: &JobContext, msg: &JobMessage) -> anyhow::Result<()> {
    let job_id = msg.job_id;
    let Some(job) = job_run::Entity::find_by_id(job_id).one(&ctx.db).await? else {
        return Ok(()); // deleted with its account or member
    };
    if status::is_final(&job.status) {
        return Ok(()); // a duplicate delivery, or cancelled while queued
    }
    if !is_current(&job, msg.attempts) {
        tracing::info!(job_id = %job_id, "an earlier delivery of the job skipped");
        return Ok(());
    }
    let attempt = job.attempts + 1;
    let now = Utc::now();
    // Claim: QUEUED, or RUNNING left behind by a worker that died.
    let claimed = job_run::Entity::update_many()
        .col_expr(job_run::Column::Status, Expr::value(status::RUNNING))
        .col_expr(job_run::Column::Attempts, Expr::value(attempt))
        .col_expr(job_run::Column::StartedAt, Expr::value(now))
        .col_expr(job_run::Column::UpdatedAt, Expr::value(now))
        .col_expr(job_run::Column::HeartbeatAt, Expr::value(now))
        .filter(job_run::Column::Id.eq(job_id))
        .filter(job_run::Column::Attempts.eq(job.attempts))
        .filter(job_run::Column::Status.is_in([status::QUEUED, status::RUNNING]))
        .exec(&ctx.db)
        .await?;
    if claimed.rows_affected == 0 {
        return Ok(()); // another worker has it
    }
    // The params as claimed: a refresh may have added members to the
    // queued job since it was read above (only while it is QUEUED).
    let Some(job) = job_run::Entity::find_by_id(job_id).one(&ctx.db).await? else {
        return Ok(()); // deleted with its account meanwhile
    };
    tracing::info!(job_id = %job_id, kind = %job.kind, attempt, "job started");
    let progress = Progress::new(ctx.db.clone(), job_id);
    let alive = Heartbeat::start(ctx, job_id, attempt);
    let outcome = match JobKind::parse(&job.kind) {
        Some(kind) => execute(ctx, kind, &job, &progress).await,
        None => Err(JobError::Permanent(format!(
            "unknown job kind {}",
            job.kind
        ))),
    };
    drop(alive);
    let now = Utc::now();
    let finish = |st: &'static str| {
        job_run::Entity::update_many()
            .col_expr(job_run::Column::Status, Expr::value(st))
            .col_expr(job_run::Column::UpdatedAt, Expr::value(now))
            .filter(job_run::Column::Id.eq(job_id))
            .filter(job_run::Column::Status.eq(status::RUNNING))
    };
    match outcome {
        Ok(result) => {
            finish(status::SUCCEEDED)
                .col_expr(job_run::Column::Progress, Expr::value(1.0))
                .col_expr(job_run::Column::Result, Expr::value(result))
                .col_expr(job_run::Column::Error, Expr::value(Option::<String>::None))
                .col_expr(job_run::Column::FinishedAt, Expr::value(now))
                .exec(&ctx.db)
                .await?;
            tracing::info!(job_id = %job_id, "job succeeded");
        }
        Err(JobError::Cancelled) => {
            tracing::info!(job_id = %job_id, "job cancelled");
        }
        Err(JobError::Permanent(msg)) => {
            finish(status::FAILED)
                .col_expr(job_run::Column::Error, Expr::value(msg))
                .col_expr(job_run::Column::FinishedAt, Expr::value(now))
                .exec(&ctx.db)
                .await?;
            tracing::warn!(job_id = %job_id, "job failed permanently");
        }
        Err(JobError::Transient(e)) if attempt < job.max_attempts => {
            let delay = backoff(attempt);
            let run_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
            finish(status::QUEUED)
                .col_expr(
                    job_run::Column::Error,
                    Expr::value(format!("attempt {attempt} failed: {e}")),
                )
                .col_expr(job_run::Column::RunAt, Expr::value(run_at))
                .exec(&ctx.db)
                .await?;
            ctx.queue
                .push(super::Delivery {
                    job_id,
                    attempts: attempt,
                    run_at,
                })
                .await?;
            tracing::warn!(job_id = %job_id, attempt, retry_in_s = delay.as_secs(), error = %e, "job failed; will retry");
        }
        Err(JobError::Transient(e)) => {
            finish(status::FAILED)
                .col_expr(
                    job_run::Column::Error,
                    Expr::value(format!("failed after {attempt} attempts: {e}")),
                )
                .col_expr(job_run::Column::FinishedAt, Expr::value(now))
                .exec(&ctx.db)
                .await?;
            tracing::warn!(job_id = %job_id, attempt, "job failed; no attempts left");
        }
    }
    Ok(())
}

pub(super) fn params<T: for<'de> serde::Deserialize<'de> + Default>(
    v: &Value,
) -> Result<T, JobError> {
    if v.is_null() || v.as_object().is_some_and(|o| o.is_empty()) {
        return Ok(T::default());
    }
    serde_json::from_value(v.clone()).map_err(|e| JobError::Permanent(format!("params: {e}")))
}

async fn execute(
    ctx: &JobContext,
    kind: JobKind,
    job: &job_run::Model,
    progress: &Progress,
) -> Result<Value, JobError> {
    match kind {
        JobKind::AnalyzeTexts => {
            let p: AnalyzeParams = params(&job.params)?;
            let then_personas = p.build_personas.unwrap_or(true);
            let analysis = progress.phase(0.0, if then_personas { 0.8 } else { 1.0 });
            // Read as the registry has the account now: the re-analysis a
            // change of head queues may run here before this process's
            // periodic registry check has seen the change.
            let models = account_models(ctx, job.account_id).await;
            let band = persona_band(models.as_ref());
            let (mut result, members) = crate::analysis::run(
                &ctx.db,
                models,
                job.account_id,
                p.member_ids.as_deref(),
                p.again(),
                &analysis,
            )
            .await?;
            // The members asked for (their attributes may have changed
            // without new messages) and those whose messages were analysed;
            // a re-scoring pass over the account (`stale`, as a change of
            // head queues) changes only the latter; otherwise everyone.
            let targets: Option<Vec<Uuid>> = match p.member_ids {
                Some(mut ids) => {
                    ids.extend(members);
                    Some(ids)
                }
                None if p.stale && !p.reanalyze => Some(members),
                None => None,
            }
            .map(|mut ids| {
                ids.sort();
                ids.dedup();
                ids
            });
            if then_personas && targets.as_ref().is_some_and(Vec::is_empty) {
                result["personas"] = serde_json::json!({ "members": 0, "withSentiment": 0 });
            } else if then_personas {
                let cats = category_vectors(ctx).await?;
                result["personas"] = personas::build(
                    &ctx.db,
                    job.account_id,
                    targets.as_deref(),
                    cats.as_ref(),
                    &progress.phase(0.8, 0.1),
                )
                .await?;
                result["index"] = index_personas(
                    ctx,
                    job,
                    targets.as_deref(),
                    band,
                    &progress.phase(0.9, 0.1),
                )
                .await?;
            }
            Ok(result)
        }
        JobKind::BuildPersonas => {
            let p: PersonaParams = params(&job.params)?;
            let cats = category_vectors(ctx).await?;
            let mut result = personas::build(
                &ctx.db,
                job.account_id,
                p.member_ids.as_deref(),
                cats.as_ref(),
                &progress.phase(0.0, 0.8),
            )
            .await?;
            let models = account_models(ctx, job.account_id).await;
            result["index"] = index_personas(
                ctx,
                job,
                p.member_ids.as_deref(),
                persona_band(models.as_ref()),
                &progress.phase(0.8, 0.2),
            )
            .await?;
            // A full rebuild (the nightly one) also catches scores that a
            // change of head left stale when its re-analysis was lost.
            if let (None, Some(models)) = (&p.member_ids, &models) {
                let head = models.sentiment_model();
                result["rescoreJob"] =
                    serde_json::json!(super::stale::catch_up(ctx, job.account_id, &head).await?);
            }
            Ok(result)
        }
        JobKind::IndexPersonas => {
            let p: PersonaParams = params(&job.params)?;
            let band = persona_band(account_models(ctx, job.account_id).await.as_ref());
            index_personas(ctx, job, p.member_ids.as_deref(), band, progress).await
        }
        JobKind::RetrainSentiment => super::retrain::run(ctx, job, progress).await,
    }
}

/// The models as the account's texts are read (its own sentiment head),
/// when they are installed: fetched once per job.
async fn account_models(ctx: &JobContext, account: Uuid) -> Option<DynModels> {
    match &ctx.models {
        Some(m) => Some(m.for_account(&ctx.db, account).await),
        None => None,
    }
}

/// The band persona labels are in: that of the head that labels the
/// account's texts, or the shipped one without models.
fn persona_band(models: Option<&DynModels>) -> Thresholds {
    models.map_or_else(crate::analysis::shipped_thresholds, |m| m.thresholds())
}

/// Syncs `members` into the search index, or rebuilds the account's index;
/// `band` labels persona sentiment ([`persona_band`]).
async fn index_personas(
    ctx: &JobContext,
    job: &job_run::Model,
    members: Option<&[Uuid]>,
    band: Thresholds,
    progress: &Progress,
) -> Result<Value, JobError> {
    match members {
        Some(ids) => {
            search::sync::members(&ctx.search, &ctx.db, job.account_id, ids, band).await?;
            Ok(serde_json::json!({ "synced": ids.len(), "backend": ctx.search.name() }))
        }
        None => {
            let total = entity::member::Entity::find()
                .filter(entity::member::Column::AccountId.eq(job.account_id))
                .count(&ctx.db)
                .await?;
            search::sync::rebuild(&ctx.search, &ctx.db, job.account_id, total, band, progress).await
        }
    }
}

/// The taxonomy's category embeddings, when an embedding model is installed.
async fn category_vectors(ctx: &JobContext) -> Result<Option<personas::CategoryVectors>, JobError> {
    let Some(models) = ctx.models.clone() else {
        return Ok(None);
    };
    tokio::task::spawn_blocking(move || {
        let names: Vec<&'static str> = crate::taxonomy::DEFAULT.iter().map(|c| c.name).collect();
        let texts: Vec<String> = crate::taxonomy::DEFAULT
            .iter()
            .map(|c| c.description.to_owned())
            .collect();
        let vectors = models.embed.embed_queries(&texts)?;
        Ok::<_, anyhow::Error>(Some(personas::CategoryVectors {
            model: models.embed.embedding_model().to_owned(),
            names,
            vectors,
        }))
    })
    .await
    .map_err(|e| JobError::Transient(e.into()))?
    .map_err(JobError::Transient)
}

#[cfg(test)]
mod tests {
    use super::{backoff, is_current, job_run, status};

    #[test]
    fn a_delivery_runs_the_job_that_waits_for_it_or_one_a_dead_worker_left() {
        let job = |st: &str, attempts: i32| job_run::Model {
            id: uuid::Uuid::nil(),
            account_id: uuid::Uuid::nil(),
            kind: "BUILD_PERSONAS".into(),
            status: st.into(),
            params: serde_json::json!({}),
            result: None,
            error: None,
            progress: 0.0,
            attempts,
            run_at: chrono::Utc::now(),
            created_at: chrono::Utc::now(),
            started_at: None,
            finished_at: None,
            max_attempts: 3,
            schedule_key: None,
            updated_at: None,
            staged: false,
            heartbeat_at: None,
        };
        assert!(is_current(&job(status::QUEUED, 1), Some(1)));
        // The first delivery, late, while the job waits for its retry.
        assert!(!is_current(&job(status::QUEUED, 1), Some(0)));
        // apalis hands on the entry of a worker that died, once or more.
        assert!(is_current(&job(status::RUNNING, 1), Some(0)));
        assert!(is_current(&job(status::RUNNING, 3), Some(1)));
        assert!(!is_current(&job(status::RUNNING, 1), Some(1)));
        // Entries queued before deliveries were counted.
        assert!(is_current(&job(status::QUEUED, 2), None));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1).as_secs(), 2);
        assert_eq!(backoff(2).as_secs(), 4);
        assert_eq!(backoff(20).as_secs(), 300);
    }
}
