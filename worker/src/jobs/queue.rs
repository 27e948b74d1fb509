//! The durable queue: apalis storage on SQLite (its own pool on the same
//! file) or on PostgreSQL (the ORM's pool).
use std::{str::FromStr, time::Duration};

use anyhow::Context as _;
use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_postgres::PostgresStorage;
use apalis_sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteStorage};
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;

use super::JobMessage;
use crate::Config;

/// The queue's name on both sides (apalis defaults differ by constructor).
pub const QUEUE: &str = "lingxi-jobs";

#[derive(Clone)]
pub enum JobQueue {
    Sqlite(SqliteStorage<JobMessage>),
    Postgres(PostgresStorage<JobMessage>),
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobQueue::Sqlite(_) => "JobQueue::Sqlite",
            JobQueue::Postgres(_) => "JobQueue::Postgres",
        })
    }
}

/// How often an idle worker looks for jobs pushed by another process, and
/// how soon a dead worker's jobs are handed to another.
pub const POLL: Duration = Duration::from_millis(300);
const HEARTBEAT: Duration = Duration::from_secs(2);

impl JobQueue {
    /// Connects and runs apalis's own migrations (idempotent).
    ///
    /// # Errors
    /// The queue tables cannot be created or reached.
    pub async fn connect(cfg: &Config, db: &DatabaseConnection) -> anyhow::Result<Self> {
        if cfg.is_sqlite() {
            // A separate pool: apalis sets `synchronous=OFF` on its connections,
            // which must not leak into the ORM's writes.
            let opts = SqliteConnectOptions::from_str(&cfg.database_url)
                .context("LINGXI_DATABASE_URL")?
                .create_if_missing(true)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts)
                .await?;
            SqliteStorage::setup(&pool)
                .await
                .context("job queue set-up (SQLite)")?;
            let config = apalis_sqlite::Config::default()
                .queue(QUEUE)
                .heartbeat_interval(HEARTBEAT)
                .missed_heartbeats(3)
                .batch_size(4);
            Ok(JobQueue::Sqlite(
                SqliteStorage::new(&pool).with_config(config),
            ))
        } else {
            let pool = db.get_postgres_connection_pool().clone();
            PostgresStorage::setup(&pool)
                .await
                .context("job queue set-up (PostgreSQL)")?;
            let config = apalis_postgres::Config::default()
                .queue(QUEUE)
                .heartbeat_interval(HEARTBEAT)
                .missed_heartbeats(3)
                .batch_size(4);
            Ok(JobQueue::Postgres(
                PostgresStorage::new(&pool).with_config(config),
            ))
        }
    }

    /// Puts a job on the queue, to run at `run_at` (or now).
    ///
    /// # Errors
    /// The queue cannot be written.
    pub async fn push(&self, msg: JobMessage, run_at: DateTime<Utc>) -> anyhow::Result<()> {
        let delay = (run_at - Utc::now()).to_std().unwrap_or_default();
        // Our own retry logic decides about attempts: apalis delivers once
        // more only for a worker that died mid-job.
        let task = TaskBuilder::new(msg)
            .run_after(delay)
            .max_attempts(25)
            .build();
        match self.clone() {
            JobQueue::Sqlite(mut s) => s.push_task(task).await.map_err(|e| anyhow::anyhow!("{e}")),
            JobQueue::Postgres(mut s) => {
                s.push_task(task).await.map_err(|e| anyhow::anyhow!("{e}"))
            }
        }
    }
}
