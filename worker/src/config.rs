//! Configuration from `LINGXI_*` environment variables, each with a default.
//!
//! The flat names are the public contract (API.md); both binaries read the
//! same struct so an `api` and a `worker` started with the same environment
//! agree on the database, the queue and the models.
use std::{env, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};

#[derive(Debug, Clone)]
pub struct Config {
    /// `LINGXI_HTTP_ADDR`: where the API listens (`127.0.0.1:0` picks a free port).
    pub http_addr: SocketAddr,
    /// `LINGXI_DATA_DIR`: SQLite file, embedded index, trained models.
    pub data_dir: PathBuf,
    /// `LINGXI_DATABASE_URL`: `sqlite://…` (default, in the data dir) or `postgres://…`.
    pub database_url: String,
    /// `LINGXI_QUEUE_URL`: unset keeps the job queue in the database; `redis://host:port/db`
    /// puts it in Redis (the `job_run` rows stay in the database either way).
    pub queue_url: Option<String>,
    /// `LINGXI_QUEUE_NAME`: the queue's name in its storage (default `lingxi-jobs`); every
    /// process sharing a queue uses the same name, and Redis keys start with it.
    pub queue_name: String,
    /// `LINGXI_MEILI_URL` / `LINGXI_MEILI_KEY`: unset means the embedded index.
    pub meili_url: Option<String>,
    pub meili_key: Option<String>,
    /// `LINGXI_MEILI_INDEX_PREFIX`: index names are `{prefix}_personas_{account}` (default `lingxi`).
    pub meili_prefix: String,
    /// `LINGXI_ADMIN_KEY`: the bootstrap operator key; generated when unset.
    pub admin_key: Option<String>,
    /// `LINGXI_DEMO`: load the demo brand on first start (default on).
    pub demo: bool,
    /// `LINGXI_MAX_BODY_MB`: larger request bodies get HTTP 413.
    pub max_body_bytes: usize,
    /// `LINGXI_MODELS_DIR`: ONNX models and runtime (default `~/.cache/lingxi/models`).
    pub models_dir: PathBuf,
    /// `LINGXI_WORKER_CONCURRENCY`: jobs run at once per process (default 2).
    pub worker_concurrency: usize,
    /// `LINGXI_MODELS`: `off` runs without language models (analysis jobs fail).
    pub models_enabled: bool,
    /// `LINGXI_ACCOUNT_HEADS`: accounts' own sentiment heads kept in memory per
    /// process (default 32, ≈ 14 MB each); the least recently used is dropped.
    pub account_heads: usize,
    /// `LINGXI_ASSETS_DIR`: GraphiQL's static files (default `~/.cache/lingxi/web`).
    pub assets_dir: PathBuf,
    /// `LINGXI_REQUEST_TIMEOUT_SECS`: HTTP requests taking longer get 408.
    pub request_timeout: Duration,
    /// `LINGXI_QUEUE_KEEP_FINISHED_SECS`: finished entries of the job queue (done, cancelled,
    /// failed for good) older than this are removed (default one day); the `job_run` rows
    /// keep the history.
    pub queue_keep_finished: Duration,
    /// `LINGXI_JOB_HEARTBEAT_TIMEOUT_SECS`: a running job whose process has not
    /// said it is alive for this long (default 120) is taken for abandoned; one the
    /// queue no longer holds is handed to another worker. Processes say so four
    /// times per period.
    pub job_heartbeat_timeout: Duration,
    /// `LINGXI_SEARCH_IDLE_SECS`: an account's embedded segment index (and the memory of
    /// its decoded columns) is closed after this long without a query or write (default 900).
    pub search_idle: Duration,
    /// `LINGXI_SCHEDULE_MIN_SECS`: recurring jobs may not fire more often than this
    /// (default 60).
    pub schedule_min_gap_secs: i64,
    /// `LINGXI_LOG_FORMAT`: `pretty` (default) or `json`.
    pub log_json: bool,
    /// `LINGXI_MAX_DEPTH` / `LINGXI_MAX_COMPLEXITY`: GraphQL query limits.
    pub max_depth: usize,
    pub max_complexity: usize,
}

fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={v:?} is invalid: {e}")),
    }
}

fn cache_dir() -> PathBuf {
    var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("lingxi")
}

impl Config {
    /// Reads the environment.
    ///
    /// # Errors
    /// A variable that is set but does not parse.
    pub fn from_env() -> anyhow::Result<Self> {
        let data_dir = PathBuf::from(var("LINGXI_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url = var("LINGXI_DATABASE_URL").unwrap_or_else(|| {
            format!("sqlite://{}?mode=rwc", data_dir.join("lingxi.db").display())
        });
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres")) {
            bail!("LINGXI_DATABASE_URL must start with sqlite: or postgres://");
        }
        let queue_url = var("LINGXI_QUEUE_URL");
        if queue_url
            .as_deref()
            .is_some_and(|u| !u.starts_with("redis://"))
        {
            bail!(
                "LINGXI_QUEUE_URL must start with redis:// (or be unset: the queue in the database)"
            );
        }
        let demo = match var("LINGXI_DEMO").as_deref() {
            None | Some("1" | "true" | "yes" | "on") => true,
            Some("0" | "false" | "no" | "off") => false,
            Some(v) => bail!("LINGXI_DEMO={v:?} is invalid: use 0 or 1"),
        };
        let max_body_mb: usize = parse("LINGXI_MAX_BODY_MB", 32)?;
        if max_body_mb == 0 {
            bail!("LINGXI_MAX_BODY_MB must be at least 1");
        }
        let models_dir = var("LINGXI_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache_dir().join("models"));
        let assets_dir = var("LINGXI_ASSETS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| cache_dir().join("web"));
        Ok(Self {
            http_addr: parse("LINGXI_HTTP_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            data_dir,
            database_url,
            queue_url,
            queue_name: var("LINGXI_QUEUE_NAME").unwrap_or_else(|| "lingxi-jobs".into()),
            meili_url: var("LINGXI_MEILI_URL"),
            meili_key: var("LINGXI_MEILI_KEY"),
            meili_prefix: var("LINGXI_MEILI_INDEX_PREFIX").unwrap_or_else(|| "lingxi".into()),
            admin_key: var("LINGXI_ADMIN_KEY"),
            demo,
            max_body_bytes: max_body_mb.saturating_mul(1024 * 1024),
            models_dir,
            worker_concurrency: parse("LINGXI_WORKER_CONCURRENCY", 2)?,
            models_enabled: !matches!(var("LINGXI_MODELS").as_deref(), Some("off" | "0" | "false")),
            account_heads: parse("LINGXI_ACCOUNT_HEADS", 32)?,
            assets_dir,
            request_timeout: Duration::from_secs(parse("LINGXI_REQUEST_TIMEOUT_SECS", 120)?),
            search_idle: Duration::from_secs(parse("LINGXI_SEARCH_IDLE_SECS", 900)?),
            queue_keep_finished: Duration::from_secs(parse(
                "LINGXI_QUEUE_KEEP_FINISHED_SECS",
                86_400,
            )?),
            job_heartbeat_timeout: Duration::from_secs(
                parse("LINGXI_JOB_HEARTBEAT_TIMEOUT_SECS", 120u64)?.max(4),
            ),
            schedule_min_gap_secs: parse("LINGXI_SCHEDULE_MIN_SECS", 60i64)?.max(1),
            log_json: matches!(var("LINGXI_LOG_FORMAT").as_deref(), Some("json")),
            max_depth: parse("LINGXI_MAX_DEPTH", 16)?,
            max_complexity: parse("LINGXI_MAX_COMPLEXITY", 10_000)?,
        })
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

/// Installs the `tracing` subscriber once per process.
pub fn init_tracing(cfg: &Config) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("api=info,worker=info,tower_http=warn,sqlx=warn,sea_orm=warn,apalis=warn")
    });
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if cfg.log_json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Connects to the configured database (creating the data dir for SQLite).
///
/// # Errors
/// The database cannot be reached or opened.
pub async fn connect(cfg: &Config) -> anyhow::Result<sea_orm::DatabaseConnection> {
    if cfg.is_sqlite() {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    }
    let mut opts = sea_orm::ConnectOptions::new(cfg.database_url.clone());
    opts.sqlx_logging(false)
        .max_connections(if cfg.is_sqlite() { 8 } else { 16 })
        .connect_timeout(Duration::from_secs(10));
    let db = sea_orm::Database::connect(opts)
        .await
        .context("cannot connect to LINGXI_DATABASE_URL")?;
    if cfg.is_sqlite() {
        use sea_orm::ConnectionTrait;
        // WAL lets readers proceed during an import (it persists in the file).
        for pragma in ["PRAGMA journal_mode=WAL"] {
            db.execute_unprepared(pragma).await?;
        }
    }
    Ok(db)
}

/// Starts a write transaction that holds `key` for itself: on PostgreSQL a
/// transaction-scoped advisory lock (other processes asking for the same
/// key wait until it commits), on SQLite the database's write lock
/// ([`begin_write`]).
///
/// # Errors
/// Database errors.
pub async fn begin_exclusive(
    db: &sea_orm::DatabaseConnection,
    key: i64,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::ConnectionTrait;
    let tx = begin_write(db).await?;
    if tx.get_database_backend() == sea_orm::DbBackend::Postgres {
        tx.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({key})"))
            .await?;
    }
    Ok(tx)
}

/// Advisory-lock key of the schema migrations ("lingxi:migrate").
const MIGRATION_LOCK: i64 = 0x6c78_6d69_0001;

/// Brings the schema up to date, and the rows every account must have
/// (the built-in recurring jobs, for accounts of an earlier release), in
/// one transaction under a lock: an API and its workers starting together
/// on a fresh database would otherwise run the same DDL at once, and all
/// but one fail (PostgreSQL: duplicate type; SQLite: duplicate migration
/// record). The others wait, then find nothing to do.
///
/// # Errors
/// Database errors, a failed migration (nothing of it is kept).
pub async fn migrate(db: &sea_orm::DatabaseConnection) -> anyhow::Result<()> {
    use migration::MigratorTrait;
    let tx = begin_exclusive(db, MIGRATION_LOCK).await?;
    migration::Migrator::up(&tx, None)
        .await
        .context("database migration failed")?;
    let created = crate::jobs::recurring::ensure_builtin(&tx, None)
        .await
        .context("creating the built-in recurring jobs")?;
    tx.commit().await.context("database migration failed")?;
    if created > 0 {
        tracing::info!(accounts = created, "built-in recurring jobs created");
    }
    Ok(())
}

/// Starts a transaction that will write. On SQLite it takes the write lock
/// up front (`BEGIN IMMEDIATE`): a deferred transaction that reads first
/// fails at once with "database is locked" when another connection wrote
/// meanwhile, instead of waiting for the busy timeout.
///
/// # Errors
/// Database errors.
pub async fn begin_write(
    db: &sea_orm::DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}
