//! The durable queue: apalis storage on SQLite (its own pool on the same
//! file), on PostgreSQL (the ORM's pool) or, with `LINGXI_QUEUE_URL`, on
//! Redis. The queue carries only job ids; `job_run` stays in the database.
use std::{str::FromStr, time::Duration};

use anyhow::Context as _;
use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_core::backend::Vacuum;
use apalis_postgres::PostgresStorage;
use apalis_redis::RedisStorage;
use apalis_sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteStorage};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use super::JobMessage;
use crate::Config;

#[derive(Clone)]
pub enum JobQueue {
    Sqlite(SqliteStorage<JobMessage>),
    Postgres(PostgresStorage<JobMessage>),
    Redis(RedisStorage<JobMessage>),
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobQueue::Sqlite(_) => "JobQueue::Sqlite",
            JobQueue::Postgres(_) => "JobQueue::Postgres",
            JobQueue::Redis(_) => "JobQueue::Redis",
        })
    }
}

/// How often an idle worker looks for jobs pushed by another process, and
/// how soon a dead worker's jobs are handed to another.
pub const POLL: Duration = Duration::from_millis(300);
/// A worker that missed 3 heartbeats (≈ 6 s) is dead: its jobs go to another.
const HEARTBEAT: Duration = Duration::from_secs(2);
const MISSED_HEARTBEATS: usize = 3;
const BATCH: usize = 4;
/// Retries of the SQLite queue set-up (≈ 5.5 s in all).
const SETUP_RETRIES: u64 = 10;
/// Redis replies slower than this are errors (the client's default, 500 ms,
/// would stop a worker on one slow reply).
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

impl JobQueue {
    /// Connects and, on SQL, runs apalis's own migrations (idempotent).
    ///
    /// # Errors
    /// The queue tables cannot be created, or the queue cannot be reached.
    pub async fn connect(cfg: &Config, db: &DatabaseConnection) -> anyhow::Result<Self> {
        let queue = cfg.queue_name.as_str();
        if let Some(url) = &cfg.queue_url {
            let manager = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT));
            let conn = apalis_redis::Client::open(url.as_str())
                .context("LINGXI_QUEUE_URL")?
                .get_connection_manager_with_config(manager)
                .await
                .context("cannot connect to LINGXI_QUEUE_URL")?;
            let config = apalis_redis::Config::default()
                .queue(queue)
                .heartbeat_interval(HEARTBEAT)
                .missed_heartbeats(MISSED_HEARTBEATS)
                .batch_size(BATCH);
            Ok(JobQueue::Redis(RedisStorage::new(conn).with_config(config)))
        } else if cfg.is_sqlite() {
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
            // sqlx takes no migration lock on SQLite: processes starting
            // together on one file race on apalis's migrations. The loser's
            // migration rolls back; once the winner has recorded it, a retry
            // finds nothing to do.
            let mut attempt = 0u64;
            while let Err(e) = SqliteStorage::setup(&pool).await {
                attempt += 1;
                if attempt > SETUP_RETRIES {
                    return Err(e).context("job queue set-up (SQLite)");
                }
                tracing::debug!(attempt, error = %e, "job queue set-up raced another process; retrying");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            let config = apalis_sqlite::Config::default()
                .queue(queue)
                .heartbeat_interval(HEARTBEAT)
                .missed_heartbeats(MISSED_HEARTBEATS)
                .batch_size(BATCH);
            Ok(JobQueue::Sqlite(
                SqliteStorage::new(&pool).with_config(config),
            ))
        } else {
            let pool = db.get_postgres_connection_pool().clone();
            PostgresStorage::setup(&pool)
                .await
                .context("job queue set-up (PostgreSQL)")?;
            let config = apalis_postgres::Config::default()
                .queue(queue)
                .heartbeat_interval(HEARTBEAT)
                .missed_heartbeats(MISSED_HEARTBEATS)
                .batch_size(BATCH);
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
        // Our own retry logic decides about attempts: apalis delivers once
        // more only for a worker that died mid-job.
        let mut task = TaskBuilder::new(msg).max_attempts(25);
        if run_at > Utc::now() {
            task = task.run_at_timestamp(due_second(run_at));
        }
        let task = task.build();
        let pushed = match self.clone() {
            JobQueue::Sqlite(mut s) => s.push_task(task).await.map_err(|e| e.to_string()),
            JobQueue::Postgres(mut s) => s.push_task(task).await.map_err(|e| e.to_string()),
            JobQueue::Redis(mut s) => s.push_task(task).await.map_err(|e| e.to_string()),
        };
        pushed.map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// What "finished for good" means in apalis's SQL schemas (both the same):
/// done, killed, or failed with no attempt left.
macro_rules! finished_for_good {
    () => {
        "(status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts))"
    };
}
/// Deletes the entries finished for good whose `done_at` is older than the
/// cut-off ($1 seconds), in apalis's SQLite table; the same in its
/// PostgreSQL schema below.
const PURGE_SQLITE: &str = concat!(
    "DELETE FROM Jobs WHERE done_at IS NOT NULL \
     AND done_at < CAST(strftime('%s', 'now') AS INTEGER) - $1 AND ",
    finished_for_good!()
);
/// The same in apalis's PostgreSQL schema.
const PURGE_POSTGRES: &str = concat!(
    "DELETE FROM apalis.jobs WHERE done_at IS NOT NULL \
     AND done_at < now() - make_interval(secs => $1) AND ",
    finished_for_good!()
);

impl JobQueue {
    /// Removes queue entries of jobs that finished more than `older_than`
    /// ago, so the queue does not grow forever (in Redis, in memory); the
    /// `job_run` rows keep their history. Returns how many were removed.
    /// SQLite space is reused by later jobs (no `VACUUM`, which would
    /// rewrite the whole product database).
    ///
    /// # Errors
    /// The queue storage cannot be reached.
    pub async fn purge_finished(
        &self,
        db: &DatabaseConnection,
        older_than: Duration,
    ) -> anyhow::Result<u64> {
        let secs = older_than.as_secs();
        // The cut-off as each database's function wants it.
        let (sql, cutoff): (&str, sea_orm::Value) = match self {
            JobQueue::Redis(s) => {
                let removed = s
                    .clone()
                    .vacuum_before(older_than)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                return Ok(removed as u64);
            }
            JobQueue::Sqlite(_) => (PURGE_SQLITE, i64::try_from(secs).unwrap_or(i64::MAX).into()),
            JobQueue::Postgres(_) => (PURGE_POSTGRES, (secs as f64).into()),
        };
        let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, [cutoff]);
        Ok(db.execute_raw(stmt).await?.rows_affected())
    }
}

/// Every storage schedules in whole Unix seconds and delivers a task once
/// its second has come: rounding up keeps a job from starting before `run_at`.
fn due_second(run_at: DateTime<Utc>) -> u64 {
    let secs = run_at.timestamp() + i64::from(run_at.timestamp_subsec_nanos() > 0);
    u64::try_from(secs).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::due_second;
    use chrono::TimeZone;

    #[test]
    fn a_delayed_job_is_due_no_earlier_than_its_time() {
        let t = chrono::Utc.timestamp_opt(1_800_000_000, 0).unwrap();
        assert_eq!(due_second(t), 1_800_000_000);
        let later = t + chrono::Duration::milliseconds(1);
        assert_eq!(due_second(later), 1_800_000_001);
    }
}
