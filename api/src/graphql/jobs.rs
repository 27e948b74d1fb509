//! Background jobs: enqueue, inspect, cancel, and watch them.
use async_graphql::{Context, Enum, ID, InputObject, Json, Object};
use chrono::{DateTime, Utc};
use entity::job_run;
use futures::Stream;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::Value;
use worker::jobs::{self, EnqueueError, enqueue::NewJob, status};

use super::{
    connection::{Conn, PageArgs, paginate},
    parse_id, to_id,
};
use crate::{
    auth::Auth,
    context::ContextExt,
    error::{AppError, GqlError, GqlResult},
    policy, tenant,
    watch::{self, Table},
};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum JobKind {
    /// Sentiment, embedding and keywords for new messages; then their personas.
    /// Params: `{ memberIds?: [ID], reanalyze?: Boolean, buildPersonas?: Boolean }`.
    AnalyzeTexts,
    /// Rebuilds personas. Params: `{ memberIds?: [ID] }` (default: everyone).
    BuildPersonas,
    /// Retrains the sentiment head on the platform corpus; the new version
    /// becomes active only if its balanced accuracy is higher. No params.
    /// The head is shared by every account: the platform operator only.
    RetrainSentiment,
    /// Brings the segment search index up to date. Params: `{ memberIds?: [ID] }`;
    /// without ids a full rebuild that readers never see half done.
    IndexPersonas,
}

impl From<JobKind> for jobs::JobKind {
    fn from(k: JobKind) -> Self {
        match k {
            JobKind::AnalyzeTexts => jobs::JobKind::AnalyzeTexts,
            JobKind::BuildPersonas => jobs::JobKind::BuildPersonas,
            JobKind::RetrainSentiment => jobs::JobKind::RetrainSentiment,
            JobKind::IndexPersonas => jobs::JobKind::IndexPersonas,
        }
    }
}

pub(super) fn kind_of(s: &str) -> Option<JobKind> {
    match jobs::JobKind::parse(s)? {
        jobs::JobKind::AnalyzeTexts => Some(JobKind::AnalyzeTexts),
        jobs::JobKind::BuildPersonas => Some(JobKind::BuildPersonas),
        jobs::JobKind::RetrainSentiment => Some(JobKind::RetrainSentiment),
        jobs::JobKind::IndexPersonas => Some(JobKind::IndexPersonas),
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => status::QUEUED,
            JobStatus::Running => status::RUNNING,
            JobStatus::Succeeded => status::SUCCEEDED,
            JobStatus::Failed => status::FAILED,
            JobStatus::Cancelled => status::CANCELLED,
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            status::RUNNING => JobStatus::Running,
            status::SUCCEEDED => JobStatus::Succeeded,
            status::FAILED => JobStatus::Failed,
            status::CANCELLED => JobStatus::Cancelled,
            _ => JobStatus::Queued,
        }
    }
}

pub struct Job(pub job_run::Model);

#[Object]
impl Job {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }
    async fn kind(&self) -> Option<JobKind> {
        kind_of(&self.0.kind)
    }
    async fn status(&self) -> JobStatus {
        JobStatus::parse(&self.0.status)
    }
    /// 0..1
    async fn progress(&self) -> f64 {
        self.0.progress
    }
    async fn params(&self) -> Json<Value> {
        Json(self.0.params.clone())
    }
    /// What the job produced (counts, timings), once SUCCEEDED.
    async fn result(&self) -> Option<Json<Value>> {
        self.0.result.clone().map(Json)
    }
    /// Why the last attempt failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    async fn max_attempts(&self) -> i32 {
        self.0.max_attempts
    }
    async fn run_at(&self) -> DateTime<Utc> {
        self.0.run_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
}

#[derive(InputObject)]
pub struct EnqueueJobInput {
    pub kind: JobKind,
    pub params: Option<Json<Value>>,
    /// Run later (default: now).
    pub run_at: Option<DateTime<Utc>>,
    /// Attempts before FAILED (1–10, default 3).
    pub max_attempts: Option<i32>,
}

impl From<EnqueueError> for AppError {
    fn from(e: EnqueueError) -> Self {
        match e {
            EnqueueError::BadParams { field, message } => AppError::bad_input(field, message),
            EnqueueError::Db(e) => AppError::Db(e),
            EnqueueError::Queue(e) => AppError::Internal(e),
        }
    }
}

#[derive(Default)]
pub struct JobsQuery;

#[Object]
impl JobsQuery {
    /// One job; null when it does not exist in this account.
    async fn job(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Job>> {
        let id = parse_id(&id, "id")?;
        match tenant::get::<job_run::Entity>(ctx.db(), ctx.tenant()?, id).await {
            Ok(j) => Ok(Some(Job(j))),
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The account's jobs, newest first; optionally of one status and kind.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 500) as usize * child_complexity + 1")]
    async fn jobs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<JobStatus>,
        kind: Option<JobKind>,
    ) -> GqlResult<Conn<Job>> {
        let mut select = tenant::scoped::<job_run::Entity>(ctx.tenant()?);
        if let Some(s) = status {
            select = select.filter(job_run::Column::Status.eq(s.as_str()));
        }
        if let Some(k) = kind {
            select = select.filter(job_run::Column::Kind.eq(jobs::JobKind::from(k).as_str()));
        }
        Ok(paginate(
            ctx.db(),
            select,
            job_run::Column::Id,
            PageArgs::new(first, after)?,
            true,
            |m| m.id,
            Job,
        )
        .await?)
    }
}

#[derive(Default)]
pub struct JobsMutation;

#[Object]
impl JobsMutation {
    /// Queues a job; watch it with `job(id)` or the `jobUpdated` subscription.
    async fn enqueue_job(&self, ctx: &Context<'_>, input: EnqueueJobInput) -> GqlResult<Job> {
        let account_id = ctx.tenant()?;
        let params = input.params.map(|p| p.0).unwrap_or(Value::Null);
        // params first: whether a job is platform-wide depends on them
        jobs::enqueue::validate(input.kind.into(), &params).map_err(AppError::from)?;
        policy::check_job_kind(ctx.principal()?, input.kind.into(), &params)?;
        if let Some(m) = input.max_attempts
            && !(1..=10).contains(&m)
        {
            return Err(AppError::bad_input("input.maxAttempts", "between 1 and 10").into());
        }
        let state = ctx.state();
        let job = NewJob {
            run_at: input.run_at,
            max_attempts: input.max_attempts.unwrap_or(3),
            ..NewJob::now(account_id, input.kind.into(), params)
        };
        let row = jobs::enqueue(ctx.db(), &state.queue, job)
            .await
            .map_err(AppError::from)?
            .ok_or_else(|| AppError::Conflict("this job is already scheduled".into()))?;
        Ok(Job(row))
    }

    /// Cancels a queued or running job (a running one stops at its next checkpoint).
    async fn cancel_job(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Job> {
        let id = parse_id(&id, "id")?;
        let account_id = ctx.tenant()?;
        let job = tenant::get::<job_run::Entity>(ctx.db(), account_id, id).await?;
        if status::is_final(&job.status) {
            return Err(
                AppError::bad_input("id", format!("the job is already {}", job.status)).into(),
            );
        }
        let now = Utc::now();
        job_run::Entity::update_many()
            .col_expr(job_run::Column::Status, Expr::value(status::CANCELLED))
            .col_expr(job_run::Column::FinishedAt, Expr::value(now))
            .col_expr(job_run::Column::UpdatedAt, Expr::value(now))
            .filter(job_run::Column::Id.eq(id))
            .filter(job_run::Column::AccountId.eq(account_id))
            .filter(job_run::Column::Status.is_in([status::QUEUED, status::RUNNING]))
            .exec(ctx.db())
            .await?;
        Ok(Job(tenant::get::<job_run::Entity>(
            ctx.db(),
            account_id,
            id,
        )
        .await?))
    }
}

/// Emits the job now and on every change, and ends after a final status.
pub async fn job_updates(
    ctx: &Context<'_>,
    id: ID,
) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<Job>> + use<>> {
    let principal = policy::check("Subscription", "jobUpdated", ctx.data_opt::<Auth>())
        .and_then(|p| p.ok_or(AppError::Unauthenticated))
        .map_err(GqlError::from)?;
    let id = parse_id(&id, "id").map_err(GqlError::from)?;
    let db = ctx.db().clone();
    let account_id = principal.account_id;
    // Watch first, so a write before the first read below is not missed.
    let watch = ctx.state().watcher.watch(Table::JobRun, id);
    tenant::get::<job_run::Entity>(&db, account_id, id)
        .await
        .map_err(GqlError::from)?;
    Ok(watch::follow(
        watch,
        tenant::reader::<job_run::Entity, _>(db, account_id, id, Job),
        |j: &Job| {
            (
                j.0.status.clone(),
                (j.0.progress * 1000.0) as i64,
                j.0.attempts,
                j.0.error.clone(),
            )
        },
        |j| status::is_final(&j.0.status),
    ))
}
