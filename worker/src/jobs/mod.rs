//! Background jobs: one durable queue (apalis on SQLite, PostgreSQL or Redis)
//! that carries job ids, and our own `job_run` table that carries everything a
//! user sees (kind, params, status, progress, result, error, attempts).
//!
//! apalis gives durability, delayed delivery and orphan recovery; retries
//! with backoff and permanent failures are decided here, identically on
//! every storage.
pub mod backlog;
pub mod enqueue;
pub mod execute;
pub mod lost;
pub mod queue;
pub mod recurring;
pub mod refresh;
pub mod retrain;
pub mod stale;
#[cfg(test)]
pub(crate) mod testing;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use enqueue::{EnqueueError, enqueue};
pub use queue::{Delivery, JobQueue};

/// What travels through the queue: the id of our `job_run` row, and the
/// attempts it had when this delivery was queued (absent in entries queued
/// before deliveries were counted), so that a delivery that is no longer
/// the job's current one is told apart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobMessage {
    pub job_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
}

/// The kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Sentiment, embedding and keywords for messages not analysed yet.
    AnalyzeTexts,
    /// Personas from messages, events and friend edges.
    BuildPersonas,
    /// Retrains the sentiment head; promoted only if better.
    RetrainSentiment,
    /// Brings the search index up to date (some members, or a full rebuild).
    IndexPersonas,
}

impl JobKind {
    pub const ALL: [JobKind; 4] = [
        JobKind::AnalyzeTexts,
        JobKind::BuildPersonas,
        JobKind::RetrainSentiment,
        JobKind::IndexPersonas,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::AnalyzeTexts => "ANALYZE_TEXTS",
            JobKind::BuildPersonas => "BUILD_PERSONAS",
            JobKind::RetrainSentiment => "RETRAIN_SENTIMENT",
            JobKind::IndexPersonas => "INDEX_PERSONAS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Changes what every account uses (the shared sentiment head), so only
    /// the platform operator may queue it. A sentiment retrain on the
    /// account's own examples (`accountExamples`) changes that account's
    /// head only.
    pub fn is_platform_wide(self, params: &serde_json::Value) -> bool {
        matches!(self, JobKind::RetrainSentiment)
            && params.get("accountExamples") != Some(&serde_json::Value::Bool(true))
    }
}

/// Job statuses as stored and shown.
pub mod status {
    pub const QUEUED: &str = "QUEUED";
    pub const RUNNING: &str = "RUNNING";
    pub const SUCCEEDED: &str = "SUCCEEDED";
    pub const FAILED: &str = "FAILED";
    pub const CANCELLED: &str = "CANCELLED";

    pub fn is_final(s: &str) -> bool {
        matches!(s, SUCCEEDED | FAILED | CANCELLED)
    }
}

/// The params of the account's jobs of `kind` in one of `statuses` whose
/// time has come (one queued for later does not count): what the account
/// has in hand of that kind, for callers deciding whether to queue more.
///
/// # Errors
/// Database errors.
pub async fn due_params(
    db: &impl sea_orm::ConnectionTrait,
    account: Uuid,
    kind: JobKind,
    statuses: &[&str],
) -> Result<Vec<serde_json::Value>, sea_orm::DbErr> {
    use entity::job_run;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
    job_run::Entity::find()
        .select_only()
        .column(job_run::Column::Params)
        .filter(job_run::Column::AccountId.eq(account))
        .filter(job_run::Column::Kind.eq(kind.as_str()))
        .filter(job_run::Column::Status.is_in(statuses.iter().copied()))
        .filter(job_run::Column::RunAt.lte(chrono::Utc::now()))
        .into_tuple()
        .all(db)
        .await
}

/// How a job run ended, when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Retrying cannot help (bad params, missing models): FAILED at once.
    #[error("{0}")]
    Permanent(String),
    /// May succeed later (database busy, I/O): retried with backoff.
    #[error(transparent)]
    Transient(#[from] anyhow::Error),
    /// Someone cancelled the job while it ran.
    #[error("cancelled")]
    Cancelled,
}

impl From<sea_orm::DbErr> for JobError {
    fn from(e: sea_orm::DbErr) -> Self {
        JobError::Transient(e.into())
    }
}

/// A follow-up job a job queues: its params are built in code, so a
/// failure is the database's or the queue's, and may pass.
impl From<EnqueueError> for JobError {
    fn from(e: EnqueueError) -> Self {
        JobError::Transient(e.into())
    }
}
