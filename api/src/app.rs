//! Start-up: connect, migrate, provision the operator key, load the demo,
//! then serve until SIGTERM/SIGINT with the in-process worker alongside.
use std::{sync::Arc, time::Instant};

use tokio::{net::TcpListener, sync::watch};

use crate::{
    auth,
    context::AppState,
    demo,
    graphql::{AppSchema, schema_builder},
    http::{Http, router},
    metrics::Metrics,
};

pub struct App {
    pub state: AppState,
    pub schema: AppSchema,
    /// Run the workers in this process (the embedded default).
    pub with_worker: bool,
    /// Printed once when it was generated now.
    pub generated_admin_key: Option<String>,
}

/// Advisory-lock key of the first-start bootstrap ("lingxi:bootstrap").
const BOOTSTRAP_LOCK: i64 = 0x6c78_626f_0001;

impl App {
    /// # Errors
    /// Unreachable database, failed migration, invalid configuration.
    pub async fn build(cfg: worker::Config, with_worker: bool) -> anyhow::Result<Self> {
        let db = worker::config::connect(&cfg).await?;
        worker::config::migrate(&db).await?;
        let default_name = if cfg.demo {
            demo::BRAND
        } else {
            "Default account"
        };
        // One process at a time: APIs starting together on an empty database
        // would each create an account, and all but one fail on the admin
        // key's unique hash.
        let tx = worker::config::begin_exclusive(&db, BOOTSTRAP_LOCK).await?;
        let boot = auth::bootstrap(&tx, cfg.admin_key.as_deref(), default_name)
            .await
            .map_err(|e| anyhow::anyhow!("bootstrap failed: {e}"))?;
        tx.commit().await?;
        if cfg.demo && boot.first_start {
            let started = Instant::now();
            let stats = demo::seed(&db, boot.account.id)
                .await
                .map_err(|e| anyhow::anyhow!("demo data failed: {e}"))?;
            tracing::info!(
                ?stats,
                ms = started.elapsed().as_millis() as u64,
                "demo data loaded"
            );
        }
        let queue = worker::jobs::JobQueue::connect(&cfg, &db).await?;
        let models = worker::models::load(&cfg)?;
        if let Some(m) = &models {
            m.sync_registry(&db).await?;
            m.watch_registry(db.clone(), worker::models::REFRESH_EVERY);
        }
        let search = worker::search::open(&cfg).await?;
        if cfg.demo && boot.first_start {
            // The demo's personas and index: analysed, built and indexed by
            // the workers in the background (a full rebuild of the account).
            let kind = if models.is_some() {
                worker::jobs::JobKind::AnalyzeTexts
            } else {
                worker::jobs::JobKind::BuildPersonas
            };
            worker::jobs::enqueue(
                &db,
                &queue,
                worker::jobs::enqueue::NewJob::now(boot.account.id, kind, serde_json::json!({})),
            )
            .await
            .map_err(|e| anyhow::anyhow!("could not queue the demo personas: {e}"))?;
            // That pass reads every seeded member: the seed's touches need
            // no refresh of their own.
            worker::jobs::refresh::forget(&db, boot.account.id).await?;
        }
        // Queues persona refreshes for the members changes touched.
        worker::jobs::refresh::start(db.clone(), queue.clone(), models.is_some());
        let watcher = crate::watch::RowWatcher::new(db.clone(), crate::watch::EVERY);
        let state = AppState {
            db,
            watcher,
            queue,
            models,
            search,
            config: Arc::new(cfg),
            metrics: Arc::new(Metrics::default()),
            started: Instant::now(),
        };
        let schema = schema_builder(state.config.max_depth, state.config.max_complexity)
            .data(state.clone())
            .finish();
        Ok(Self {
            state,
            schema,
            with_worker,
            generated_admin_key: boot.generated_secret,
        })
    }

    /// Serves on `listener` until a shutdown signal, then drains.
    ///
    /// # Errors
    /// I/O errors of the listener.
    pub async fn serve(self, listener: TcpListener) -> anyhow::Result<()> {
        let signal = shutdown_signal()?;
        self.serve_until(listener, signal).await
    }

    /// Serves until `shutdown` resolves, then drains.
    ///
    /// # Errors
    /// I/O errors of the listener.
    pub async fn serve_until(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (tx, rx) = watch::channel(false);
        let worker = self.with_worker.then(|| {
            let db = self.state.db.clone();
            tokio::spawn(worker::runner::run(
                db,
                self.state.queue.clone(),
                self.state.models.clone(),
                self.state.search.clone(),
                worker::runner::WorkerOptions::new(&self.state.config),
                rx.clone(),
            ))
        });
        let http = Http {
            assets: Arc::new(self.state.config.assets_dir.clone()),
            state: self.state,
            schema: self.schema,
        };
        let mut shutdown_rx = rx.clone();
        axum::serve(listener, router(http))
            .with_graceful_shutdown(async move {
                tokio::select! {
                    () = shutdown => {}
                    _ = shutdown_rx.changed() => {}
                }
                tracing::info!("shutting down");
                let _ = tx.send(true);
            })
            .await?;
        if let Some(w) = worker {
            let _ = w.await;
        }
        Ok(())
    }
}

/// SIGINT or SIGTERM. The handlers are installed now, not when the future
/// is first polled, so a signal that arrives right after start-up is not lost.
///
/// # Errors
/// The signal handlers cannot be installed.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
