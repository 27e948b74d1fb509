//! The worker loop: runs until the shutdown signal resolves.
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::watch;

/// How often time-driven campaign moves are checked.
const TICK: Duration = Duration::from_secs(2);

/// Runs the background loops until `shutdown` flips to true.
pub async fn run(db: DatabaseConnection, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                match crate::campaigns::tick(&db).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(moved = n, "campaign schedule applied"),
                    Err(e) => tracing::warn!(error = %e, "campaign tick failed"),
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    tracing::info!("worker stopped");
}
