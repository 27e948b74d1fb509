//! The durable queue: apalis storage on SQLite (its own pool on the same
//! file), on PostgreSQL (the ORM's pool) or, with `LINGXI_QUEUE_URL`, on
//! Redis. The queue carries only job ids; `job_run` stays in the database.
//!
//! Every delivery of a job (its first run, each retry) is one entry whose
//! idempotency key is [`entry_key`]: pushing a delivery twice leaves one
//! entry, so whoever finds a job without its entry may push it again.
use std::{collections::HashSet, str::FromStr, time::Duration};

use anyhow::Context as _;
use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_core::backend::Vacuum;
use apalis_postgres::PostgresStorage;
use apalis_redis::RedisStorage;
use apalis_sqlite::{SqliteConnectOptions, SqlitePoolOptions, SqliteStorage};
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use uuid::Uuid;

use super::JobMessage;
use crate::Config;

/// The queue: its storage, and its name (apalis's `job_type`), which
/// scopes its entries.
#[derive(Clone)]
pub struct JobQueue {
    storage: Storage,
    name: String,
}

#[derive(Clone)]
pub enum Storage {
    Sqlite(SqliteStorage<JobMessage>),
    Postgres(PostgresStorage<JobMessage>),
    Redis(RedisStorage<JobMessage>),
}

impl std::fmt::Debug for JobQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.storage {
            Storage::Sqlite(_) => "JobQueue::Sqlite",
            Storage::Postgres(_) => "JobQueue::Postgres",
            Storage::Redis(_) => "JobQueue::Redis",
        })
    }
}

/// One delivery of a job: the job after `attempts` attempts, due at `run_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub job_id: Uuid,
    pub attempts: i32,
    pub run_at: DateTime<Utc>,
}

impl From<&entity::job_run::Model> for Delivery {
    fn from(j: &entity::job_run::Model) -> Self {
        Delivery {
            job_id: j.id,
            attempts: j.attempts,
            run_at: j.run_at,
        }
    }
}

/// The idempotency key of a delivery's queue entry.
pub fn entry_key(job_id: Uuid, attempts: i32) -> String {
    format!("{job_id}/{attempts}")
}

/// How long Redis keeps a delivery's key after the delivery is due. Redis
/// keeps keys in memory, so they expire; the workers' look for lost
/// entries renews the keys of due jobs still waiting ([`JobQueue::keep`]),
/// so only a job left waiting that long with no worker running may be
/// queued twice, which [`super::execute::run`] mostly tells apart.
const REDIS_KEY_AFTER_DUE: Duration = Duration::from_secs(7 * 24 * 3600);

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
            Ok(Self::new(
                Storage::Redis(RedisStorage::new(conn).with_config(config)),
                queue,
            ))
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
            Ok(Self::new(
                Storage::Sqlite(SqliteStorage::new(&pool).with_config(config)),
                queue,
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
            Ok(Self::new(
                Storage::Postgres(PostgresStorage::new(&pool).with_config(config)),
                queue,
            ))
        }
    }

    fn new(storage: Storage, name: &str) -> Self {
        JobQueue {
            storage,
            name: name.to_owned(),
        }
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Puts a delivery on the queue, to run at its `run_at` (or now); a
    /// delivery queued already is left as it is.
    ///
    /// # Errors
    /// The queue cannot be written.
    pub async fn push(&self, d: Delivery) -> anyhow::Result<()> {
        let key = entry_key(d.job_id, d.attempts);
        let msg = JobMessage {
            job_id: d.job_id,
            attempts: Some(d.attempts),
        };
        // Our own retry logic decides about attempts: apalis delivers once
        // more only for a worker that died mid-job.
        let mut task = TaskBuilder::new(msg).max_attempts(25).idempotency_key(&key);
        if d.run_at > Utc::now() {
            task = task.run_at_timestamp(due_second(d.run_at));
        }
        let task = task.build();
        let pushed = match self.storage.clone() {
            // SQLite's insert skips a key taken (ON CONFLICT DO NOTHING).
            Storage::Sqlite(mut s) => s.push_task(task).await.map_err(|e| e.to_string()),
            Storage::Postgres(mut s) => s.push_task(task).await.map_err(|e| e.to_string()),
            // Redis claims the key (SETNX) and skips the push if it is taken.
            Storage::Redis(s) => {
                let until_due = (d.run_at - Utc::now()).to_std().unwrap_or_default();
                let config = s
                    .get_config()
                    .clone()
                    .idempotency_ttl(Some(until_due + REDIS_KEY_AFTER_DUE));
                s.with_config(config)
                    .push_task(task)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        match pushed {
            Ok(()) => Ok(()),
            // PostgreSQL's insert fails on a key taken: that delivery is
            // queued already.
            Err(e) => match self.present(&[d]).await {
                Ok(there) if there.contains(&d.job_id) => Ok(()),
                _ => Err(anyhow::anyhow!("{e}")),
            },
        }
    }

    /// The jobs among `deliveries` whose delivery has an entry in the queue,
    /// in any state (waiting, running, or finished and not purged yet).
    /// Entries pushed before deliveries had keys count, on SQL storages,
    /// for any delivery of their job.
    ///
    /// # Errors
    /// The queue storage cannot be read.
    pub async fn present(&self, deliveries: &[Delivery]) -> anyhow::Result<HashSet<Uuid>> {
        if deliveries.is_empty() {
            return Ok(HashSet::new());
        }
        let by_key: std::collections::HashMap<String, Uuid> = deliveries
            .iter()
            .map(|d| (entry_key(d.job_id, d.attempts), d.job_id))
            .collect();
        let keys: Vec<&String> = by_key.keys().collect();
        let held: Vec<String> = match &self.storage {
            Storage::Redis(s) => {
                // Where the push script keeps a key it claimed.
                let prefix = s.get_config().idempotency_key_set();
                let names: Vec<String> = keys.iter().map(|k| format!("{prefix}:{k}")).collect();
                let values: Vec<Option<String>> = redis::cmd("MGET")
                    .arg(&names)
                    .query_async(&mut s.clone().get_connection().clone())
                    .await?;
                keys.iter()
                    .zip(values)
                    .filter_map(|(k, v)| v.map(|_| (*k).clone()))
                    .collect()
            }
            Storage::Sqlite(s) => {
                let sql = format!(
                    "SELECT idempotency_key FROM Jobs WHERE job_type = ? AND idempotency_key IN ({})",
                    placeholders(keys.len())
                );
                let mut q =
                    sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql)).bind(&self.name);
                for k in &keys {
                    q = q.bind(k.as_str());
                }
                q.fetch_all(s.pool()).await?
            }
            Storage::Postgres(s) => {
                sqlx::query_scalar::<_, String>(
                    "SELECT idempotency_key FROM apalis.jobs \
                     WHERE job_type = $1 AND idempotency_key = ANY($2)",
                )
                .bind(&self.name)
                .bind(keys.iter().map(|k| k.as_str()).collect::<Vec<_>>())
                .fetch_all(s.pool())
                .await?
            }
        };
        let mut found: HashSet<Uuid> = held.iter().filter_map(|k| by_key.get(k).copied()).collect();
        found.extend(self.legacy_entries(deliveries, &found).await?);
        Ok(found)
    }

    /// Keeps the keys of `deliveries`, all due and held by the queue, for
    /// [`REDIS_KEY_AFTER_DUE`] from now: a job that waits past its time
    /// (workers down) keeps its key, so its entry is never pushed twice.
    /// Redis only; SQL storages keep keys with their entries.
    ///
    /// # Errors
    /// The queue cannot be written.
    pub async fn keep(&self, deliveries: &[Delivery]) -> anyhow::Result<()> {
        let Storage::Redis(s) = &self.storage else {
            return Ok(());
        };
        if deliveries.is_empty() {
            return Ok(());
        }
        let prefix = s.get_config().idempotency_key_set();
        let mut pipe = redis::pipe();
        for d in deliveries {
            pipe.cmd("EXPIRE")
                .arg(format!("{prefix}:{}", entry_key(d.job_id, d.attempts)))
                .arg(REDIS_KEY_AFTER_DUE.as_secs())
                .ignore();
        }
        let () = pipe
            .query_async(&mut s.clone().get_connection().clone())
            .await?;
        Ok(())
    }

    /// Jobs among `deliveries` (not in `found`) with an entry pushed without
    /// a key (before keys were used), found by the message it carries.
    async fn legacy_entries(
        &self,
        deliveries: &[Delivery],
        found: &HashSet<Uuid>,
    ) -> anyhow::Result<Vec<Uuid>> {
        if matches!(self.storage, Storage::Redis(_)) {
            return Ok(Vec::new()); // its entries are not searched by content
        }
        let missing: Vec<(Vec<u8>, Uuid)> = deliveries
            .iter()
            .filter(|d| !found.contains(&d.job_id))
            .map(|d| {
                // The message as it was then: the id alone.
                let legacy = JobMessage {
                    job_id: d.job_id,
                    attempts: None,
                };
                Ok((serde_json::to_vec(&legacy)?, d.job_id))
            })
            .collect::<Result<_, serde_json::Error>>()?;
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let blobs: Vec<Vec<u8>> = missing.iter().map(|(b, _)| b.clone()).collect();
        let held: Vec<Vec<u8>> = match &self.storage {
            Storage::Redis(_) => Vec::new(),
            Storage::Sqlite(s) => {
                let sql = format!(
                    "SELECT job FROM Jobs WHERE job_type = ? AND idempotency_key IS NULL AND job IN ({})",
                    placeholders(blobs.len())
                );
                let mut q =
                    sqlx::query_scalar::<_, Vec<u8>>(sqlx::AssertSqlSafe(sql)).bind(&self.name);
                for b in &blobs {
                    q = q.bind(b.as_slice());
                }
                q.fetch_all(s.pool()).await?
            }
            Storage::Postgres(s) => {
                sqlx::query_scalar::<_, Vec<u8>>(
                    "SELECT job FROM apalis.jobs \
                     WHERE job_type = $1 AND idempotency_key IS NULL AND job = ANY($2)",
                )
                .bind(&self.name)
                .bind(&blobs)
                .fetch_all(s.pool())
                .await?
            }
        };
        Ok(missing
            .into_iter()
            .filter(|(b, _)| held.contains(b))
            .map(|(_, id)| id)
            .collect())
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
        let (sql, cutoff): (&str, sea_orm::Value) = match &self.storage {
            Storage::Redis(s) => {
                let removed = s
                    .clone()
                    .vacuum_before(older_than)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                return Ok(removed as u64);
            }
            Storage::Sqlite(_) => (PURGE_SQLITE, i64::try_from(secs).unwrap_or(i64::MAX).into()),
            Storage::Postgres(_) => (PURGE_POSTGRES, (secs as f64).into()),
        };
        let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, [cutoff]);
        Ok(db.execute_raw(stmt).await?.rows_affected())
    }
}

/// `n` SQLite placeholders, `?,?,…`: the only text spliced into the
/// queries above (hence their `AssertSqlSafe`).
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
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

/// The same checks on each storage: SQLite always, PostgreSQL and Redis
/// when they answer (`LINGXI_TEST_PG_URL`, `LINGXI_TEST_REDIS_URL`).
#[cfg(test)]
mod storage_tests {
    use apalis::prelude::{TaskBuilder, TaskSink};
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;

    fn config(database_url: String, queue_url: Option<String>) -> Config {
        let mut cfg = Config::from_env().unwrap();
        cfg.database_url = database_url;
        cfg.queue_url = queue_url;
        cfg.queue_name = format!("lingxi-unit-{}", Uuid::new_v4().simple());
        cfg
    }

    /// Entries in the queue, in any state.
    async fn entries(q: &JobQueue) -> i64 {
        match &q.storage {
            Storage::Sqlite(s) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE job_type = ?")
                    .bind(&q.name)
                    .fetch_one(s.pool())
                    .await
                    .unwrap()
            }
            Storage::Postgres(s) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1")
                    .bind(&q.name)
                    .fetch_one(s.pool())
                    .await
                    .unwrap()
            }
            Storage::Redis(s) => redis::cmd("HLEN")
                .arg(s.get_config().job_data_hash())
                .query_async(&mut s.clone().get_connection().clone())
                .await
                .unwrap(),
        }
    }

    async fn a_delivery_is_queued_once_and_found(q: &JobQueue) {
        let later = Utc::now() + chrono::Duration::hours(1);
        let first = Delivery {
            job_id: Uuid::now_v7(),
            attempts: 0,
            run_at: later,
        };
        assert!(q.present(&[first]).await.unwrap().is_empty());
        q.push(first).await.unwrap();
        q.push(first)
            .await
            .expect("a second push of a delivery is not an error");
        assert_eq!(entries(q).await, 1, "{q:?}: one entry");
        assert_eq!(
            q.present(&[first]).await.unwrap(),
            HashSet::from([first.job_id])
        );

        // The job's next delivery (a retry) is another entry.
        let retry = Delivery {
            attempts: 1,
            ..first
        };
        assert!(q.present(&[retry]).await.unwrap().is_empty(), "{q:?}");
        q.push(retry).await.unwrap();
        assert_eq!(entries(q).await, 2, "{q:?}");

        // An entry queued before deliveries had keys counts for its job.
        let legacy = Uuid::now_v7();
        let task = TaskBuilder::new(JobMessage {
            job_id: legacy,
            attempts: None,
        })
        .run_at_timestamp(due_second(later))
        .build();
        let sql = match q.storage.clone() {
            Storage::Sqlite(mut s) => s.push_task(task).await.map(|_| true).unwrap(),
            Storage::Postgres(mut s) => s.push_task(task).await.map(|_| true).unwrap(),
            Storage::Redis(mut s) => s.push_task(task).await.map(|_| false).unwrap(),
        };
        let found = q
            .present(&[Delivery {
                job_id: legacy,
                attempts: 0,
                run_at: later,
            }])
            .await
            .unwrap();
        // Redis entries are not searched by content.
        assert_eq!(found.contains(&legacy), sql, "{q:?}");
    }

    #[tokio::test]
    async fn on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(
            format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display()),
            None,
        );
        cfg.data_dir = dir.path().to_path_buf();
        let db = crate::config::connect(&cfg).await.unwrap();
        let q = JobQueue::connect(&cfg, &db).await.unwrap();
        a_delivery_is_queued_once_and_found(&q).await;
    }

    #[tokio::test]
    async fn on_postgres() {
        let base = std::env::var("LINGXI_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let Ok(admin) = sea_orm::Database::connect(format!("{base}/test")).await else {
            eprintln!("skipped: PostgreSQL does not answer at {base}");
            return;
        };
        let name = format!("lingxi_unit_{}", Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let cfg = config(format!("{base}/{name}"), None);
        let db = crate::config::connect(&cfg).await.unwrap();
        let q = JobQueue::connect(&cfg, &db).await.unwrap();
        a_delivery_is_queued_once_and_found(&q).await;
        drop(q);
        db.close().await.unwrap();
        admin
            .execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn on_redis() {
        let url = std::env::var("LINGXI_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/9".into());
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(
            format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display()),
            Some(url.clone()),
        );
        cfg.data_dir = dir.path().to_path_buf();
        let db = crate::config::connect(&cfg).await.unwrap();
        let Ok(q) = JobQueue::connect(&cfg, &db).await else {
            eprintln!("skipped: Redis does not answer at {url}");
            return;
        };
        a_delivery_is_queued_once_and_found(&q).await;
        let Storage::Redis(s) = &q.storage else {
            unreachable!()
        };
        let mut con = s.clone().get_connection().clone();

        // A due delivery still waiting keeps its key: `keep` (which the
        // look for lost entries calls for the due jobs the queue holds)
        // gives it REDIS_KEY_AFTER_DUE from now again.
        let due = Delivery {
            job_id: Uuid::now_v7(),
            attempts: 0,
            run_at: Utc::now() - chrono::Duration::days(6),
        };
        q.push(due).await.unwrap();
        let name = format!(
            "{}:{}",
            s.get_config().idempotency_key_set(),
            entry_key(due.job_id, due.attempts)
        );
        let ttl = redis::cmd("TTL").arg(&name).clone();
        let week = REDIS_KEY_AFTER_DUE.as_secs() as i64;
        let t: i64 = ttl.query_async(&mut con).await.unwrap();
        assert!(t > week - 60, "pushed: a week");
        // as if the job had waited almost a week past its time
        let () = redis::cmd("EXPIRE")
            .arg(&name)
            .arg(60)
            .query_async(&mut con)
            .await
            .unwrap();
        q.keep(&[due]).await.unwrap();
        let t: i64 = ttl.query_async(&mut con).await.unwrap();
        assert!(t > week - 60, "kept: a week again");
        assert_eq!(
            q.present(&[due]).await.unwrap(),
            HashSet::from([due.job_id])
        );
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", cfg.queue_name))
            .query_async(&mut con)
            .await
            .unwrap();
        if !keys.is_empty() {
            let () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut con)
                .await
                .unwrap();
        }
    }
}
