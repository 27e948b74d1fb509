//! `worker`: background workers only, for scale-out next to stateless `api --no-worker` processes.
use anyhow::Context;
use migration::MigratorTrait;
use tokio::sync::watch;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = worker::Config::from_env()?;
    worker::config::init_tracing(&cfg);
    let db = worker::config::connect(&cfg).await?;
    // The api normally migrates; a worker started first must not run on an old schema.
    migration::Migrator::up(&db, None)
        .await
        .context("database migration failed")?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    });
    tracing::info!("worker started");
    worker::runner::run(db, rx).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
