//! The worker: apalis workers on the job queue, plus the tick loop for
//! time-driven work (campaign schedule, recurring jobs). Runs until the
//! shutdown signal; a job in flight finishes first (up to a timeout).
use std::time::Duration;

use apalis::prelude::{BackendExt, Monitor, WorkerBuilder, WorkerBuilderExt};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;

use crate::{
    jobs::{
        JobQueue,
        execute::{JobContext, handle},
        lost::LostEntries,
        queue::{POLL, Storage},
        recurring,
    },
    models::SharedModels,
};

/// How often time-driven campaign moves are checked.
const TICK: Duration = Duration::from_secs(2);
/// The longest pause between purges of finished queue entries.
const PURGE_AT_MOST_EVERY: Duration = Duration::from_secs(3600);
/// How often, and after how long, head files the registry does not know
/// are removed ([`crate::registry::sweep_files`]).
const SWEEP_HEADS_EVERY: Duration = Duration::from_secs(3600);
/// How often jobs that were committed but never queued are looked for.
const RELEASE_STRANDED_EVERY: Duration = Duration::from_secs(10);
/// How long a staged job is left to the process that staged it.
const STRANDED_AFTER: Duration = Duration::from_secs(30);
/// How often a page of queued jobs is checked for a lost queue entry.
const LOST_ENTRIES_EVERY: Duration = Duration::from_secs(10);
/// How long after its time a queued job is checked: its enqueuer pushes
/// right after writing it.
const LOST_AFTER: Duration = Duration::from_secs(10);
/// Heartbeats a running job's process writes per heartbeat timeout.
const HEARTBEATS_PER_TIMEOUT: u32 = 4;

pub struct WorkerOptions {
    /// Jobs run at once in this process.
    pub concurrency: usize,
    pub data_dir: std::path::PathBuf,
    pub models_dir: std::path::PathBuf,
    /// A name unique per process (apalis tracks workers by name; the apalis
    /// worker is `{name}-{restarts}`).
    pub name: String,
    /// Finished queue entries older than this are purged.
    pub keep_finished: Duration,
    /// A running job silent this long is taken for abandoned.
    pub heartbeat_timeout: Duration,
}

impl WorkerOptions {
    pub fn new(cfg: &crate::Config) -> Self {
        Self {
            concurrency: cfg.worker_concurrency.max(1),
            data_dir: cfg.data_dir.clone(),
            models_dir: cfg.models_dir.clone(),
            name: format!(
                "lingxi-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            keep_finished: cfg.queue_keep_finished,
            heartbeat_timeout: cfg.job_heartbeat_timeout,
        }
    }
}

/// Runs the background loops until `shutdown` flips to true.
pub async fn run(
    db: DatabaseConnection,
    queue: JobQueue,
    models: Option<SharedModels>,
    search: crate::search::Search,
    opts: WorkerOptions,
    shutdown: watch::Receiver<bool>,
) {
    let ctx = JobContext {
        db: db.clone(),
        queue: queue.clone(),
        models,
        data_dir: opts.data_dir.clone(),
        models_dir: opts.models_dir.clone(),
        search,
        heartbeat: opts.heartbeat_timeout / HEARTBEATS_PER_TIMEOUT,
    };
    let ticker = tokio::spawn(tick_loop(
        db,
        queue.clone(),
        opts.heartbeat_timeout,
        opts.keep_finished,
        crate::registry::heads_dir(&opts.data_dir),
        shutdown.clone(),
    ));
    let mut rx = shutdown.clone();
    let signal = async move {
        let _ = rx.wait_for(|stop| *stop).await;
        Ok(())
    };
    // A worker whose storage failed (a heartbeat that timed out, a Redis
    // worker another declared dead) stops; it starts again under a new name,
    // since the storage may still hold the old one. Its jobs in flight were
    // dropped and come back through orphan recovery.
    let monitor = Monitor::new()
        .shutdown_timeout(Duration::from_secs(20))
        .should_restart(|worker, error| {
            tracing::warn!(worker = worker.name(), %error, "job worker failed; restarting");
            true
        });
    let name = opts.name.clone();
    let concurrency = opts.concurrency.max(1);
    // The same registration for every storage; a macro because
    // `Monitor::register`'s bounds span a dozen associated types.
    macro_rules! run_on {
        ($storage:expr) => {{
            let storage = $storage;
            monitor
                .register(move |restarts| {
                    WorkerBuilder::new(format!("{name}-{restarts}"))
                        .backend(storage.clone().poll_with_interval(POLL))
                        .concurrency(concurrency)
                        .data(ctx.clone())
                        .build(handle)
                })
                .run_with_signal(signal)
                .await
        }};
    }
    let result = match queue.storage().clone() {
        Storage::Sqlite(storage) => run_on!(storage),
        Storage::Postgres(storage) => run_on!(storage),
        Storage::Redis(storage) => run_on!(storage),
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "job workers stopped with an error");
    }
    let _ = ticker.await;
    tracing::info!("worker stopped");
}

/// A chore that runs at the first tick, then once per `period`.
struct Every {
    period: Duration,
    last: Option<std::time::Instant>,
}

impl Every {
    fn new(period: Duration) -> Every {
        Every { period, last: None }
    }

    /// True (and the clock restarts) when the chore is due.
    fn due(&mut self) -> bool {
        let due = self.last.is_none_or(|t| t.elapsed() >= self.period);
        if due {
            self.last = Some(std::time::Instant::now());
        }
        due
    }
}

async fn tick_loop(
    db: DatabaseConnection,
    queue: JobQueue,
    heartbeat_timeout: Duration,
    keep_finished: Duration,
    heads_dir: std::path::PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Purge a few times per retention period, at most hourly.
    let mut purge = Every::new((keep_finished / 4).clamp(TICK, PURGE_AT_MOST_EVERY));
    let mut sweep = Every::new(SWEEP_HEADS_EVERY);
    let mut stranded = Every::new(RELEASE_STRANDED_EVERY);
    let mut lost_check = Every::new(LOST_ENTRIES_EVERY);
    let mut lost = LostEntries::default();
    loop {
        tokio::select! {
            _ = interval.tick() => {
                match crate::campaigns::tick(&db).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(moved = n, "campaign schedule applied"),
                    Err(e) => tracing::warn!(error = %e, "campaign tick failed"),
                }
                match recurring::run_due(&db, &queue).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(queued = n, "recurring jobs queued"),
                    Err(e) => tracing::warn!(error = %e, "recurring job scan failed"),
                }
                if stranded.due() {
                    match crate::jobs::enqueue::release_stranded(&db, &queue, STRANDED_AFTER).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(queued = n, "stranded jobs queued"),
                        Err(e) => tracing::warn!(error = %e, "queueing stranded jobs failed"),
                    }
                }
                if lost_check.due() {
                    match lost.step(&db, &queue, LOST_AFTER).await {
                        Ok(0) => {}
                        Ok(n) => tracing::warn!(queued = n, "jobs without a queue entry queued again"),
                        Err(e) => tracing::warn!(error = %e, "checking queued jobs' entries failed"),
                    }
                    match crate::jobs::lost::abandoned(&db, &queue, heartbeat_timeout).await {
                        Ok(0) => {}
                        Ok(n) => tracing::warn!(queued = n, "abandoned running jobs queued again"),
                        Err(e) => tracing::warn!(error = %e, "checking running jobs failed"),
                    }
                }
                if purge.due() {
                    match queue.purge_finished(&db, keep_finished).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(removed = n, "finished queue entries purged"),
                        Err(e) => tracing::warn!(error = %e, "purging finished queue entries failed"),
                    }
                }
                if sweep.due() {
                    match crate::registry::sweep_files(&db, &heads_dir, SWEEP_HEADS_EVERY).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(removed = n, "unrecorded head files removed"),
                        Err(e) => tracing::warn!(error = %e, "sweeping head files failed"),
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chore_is_due_at_once_then_once_per_period() {
        let hour = Duration::from_secs(3600);
        let mut e = Every::new(hour);
        assert!(e.due(), "due at the first tick");
        assert!(!e.due(), "not again within the period");
        // A period later (the clock is moved back rather than waited for).
        e.last = std::time::Instant::now().checked_sub(hour);
        assert!(e.due());
        assert!(!e.due());
    }
}
