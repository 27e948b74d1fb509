//! `worker`: background workers only, for scale-out next to stateless `api --no-worker` processes.
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = worker::Config::from_env()?;
    worker::config::init_tracing(&cfg);
    let db = worker::config::connect(&cfg).await?;
    // The api normally migrates; a worker started first must not run on an old schema.
    worker::config::migrate(&db).await?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    });
    let queue = worker::jobs::JobQueue::connect(&cfg, &db).await?;
    let models = worker::models::load(&cfg)?;
    if let Some(m) = &models {
        m.sync_registry(&db).await?;
        m.watch_registry(db.clone(), worker::models::REFRESH_EVERY);
    }
    let search = worker::search::open(&cfg).await?;
    let opts = worker::runner::WorkerOptions::new(&cfg);
    tracing::info!(name = %opts.name, "worker started");
    println!("Lingxi worker started");
    worker::runner::run(db, queue, models, search, opts, rx).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
