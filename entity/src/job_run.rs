//! Our mirror of a background job, whatever the queue storage.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "job_run")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub kind: String,
    /// QUEUED | RUNNING | SUCCEEDED | FAILED | CANCELLED
    pub status: String,
    pub params: Json,
    pub result: Option<Json>,
    pub error: Option<String>,
    pub progress: f64,
    pub attempts: i32,
    pub run_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    /// Attempts before the job is FAILED for good.
    pub max_attempts: i32,
    /// Unique per scheduled occurrence (e.g. `nightly-personas:<account>:2026-11-27`).
    pub schedule_key: Option<String>,
    pub updated_at: Option<DateTimeUtc>,
    /// Written in a change's transaction and not yet handed to the queue
    /// (`worker::jobs::enqueue::stage`).
    pub staged: bool,
    /// When the process running the job last said it was alive
    /// (`worker::jobs::execute`); older than the heartbeat timeout, the
    /// process is taken for dead.
    pub heartbeat_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
