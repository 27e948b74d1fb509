//! The debounced refresh of members whose data just changed (recurring jobs,
//! the nightly persona rebuild among them, are in [`super::recurring`]).
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{JobKind, JobQueue, enqueue, enqueue::NewJob};

/// Collects members whose messages or events changed and, after a short
/// quiet period, queues one refresh job per account for exactly them.
#[derive(Clone)]
pub struct Refresher {
    pending: Arc<Mutex<HashMap<Uuid, HashSet<Uuid>>>>,
}

/// How long changes are collected before one job is queued.
pub const DEBOUNCE: Duration = Duration::from_millis(800);
/// How long a refresh waits at most for the account's running one.
pub const MAX_HOLD: Duration = Duration::from_secs(60);
/// Above this many touched members a refresh is one pass over the account.
pub const FULL_REFRESH_ABOVE: usize = 5_000;

impl Refresher {
    /// Starts the flushing task. With `analysis`, refreshes analyse the new
    /// texts and rebuild the personas; without models, personas only.
    pub fn start(db: DatabaseConnection, queue: JobQueue, analysis: bool) -> Self {
        let r = Self {
            pending: Arc::default(),
        };
        let pending = Arc::clone(&r.pending);
        tokio::spawn(async move {
            // Accounts whose refresh waits for the one running, since when.
            let mut held: HashMap<Uuid, (HashSet<Uuid>, Instant)> = HashMap::new();
            loop {
                tokio::time::sleep(DEBOUNCE).await;
                let mut batch: HashMap<Uuid, HashSet<Uuid>> = match pending.lock() {
                    Ok(mut p) => std::mem::take(&mut *p),
                    Err(_) => break,
                };
                let mut since = HashMap::new();
                for (account, (members, t)) in held.drain() {
                    batch.entry(account).or_default().extend(members);
                    since.insert(account, t);
                }
                for (account, members) in batch {
                    let kind = if analysis {
                        JobKind::AnalyzeTexts
                    } else {
                        JobKind::BuildPersonas
                    };
                    // A full pass that has not started yet will read these
                    // members' new data anyway.
                    match full_pass_due(&db, account, kind).await {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "could not look for a queued full pass")
                        }
                    }
                    // Two refreshes at once would both analyse the new
                    // messages (each reads those not analysed yet): wait
                    // for the running one, which may take the newest
                    // messages along, and queue one refresh for everything
                    // touched meanwhile. Bounded, so a long pass or a dead
                    // worker's job cannot keep members stale.
                    let t = since.get(&account).copied().unwrap_or_else(Instant::now);
                    if t.elapsed() < MAX_HOLD && refresh_running(&db, account, kind).await {
                        held.insert(account, (members, t));
                        continue;
                    }
                    let ids: Vec<Uuid> = members.into_iter().collect();
                    // A bulk import touches many members: one full pass is
                    // far cheaper than a refresh per member.
                    let ids = if ids.len() > FULL_REFRESH_ABOVE {
                        Value::Null
                    } else {
                        json!(ids)
                    };
                    let job = if analysis {
                        NewJob::now(
                            account,
                            JobKind::AnalyzeTexts,
                            // `stale`: these members' messages that a change
                            // of head left behind are scored again as well.
                            json!({ "memberIds": ids, "buildPersonas": true, "stale": true }),
                        )
                    } else {
                        NewJob::now(account, JobKind::BuildPersonas, json!({ "memberIds": ids }))
                    };
                    if let Err(e) = enqueue(&db, &queue, job).await {
                        tracing::warn!(error = %e, "could not queue a persona refresh");
                    }
                }
            }
        });
        r
    }

    pub fn touch(&self, account_id: Uuid, members: impl IntoIterator<Item = Uuid>) {
        if let Ok(mut p) = self.pending.lock() {
            p.entry(account_id).or_default().extend(members);
        }
    }
}

/// Whether a refresh of the account (a job of `kind` naming `memberIds`,
/// also a null one: a bulk import's full pass) is running. A database error
/// counts as not running: the refresh is queued rather than held.
async fn refresh_running(db: &DatabaseConnection, account: Uuid, kind: JobKind) -> bool {
    match super::due_params(db, account, kind, &[super::status::RUNNING]).await {
        Ok(running) => running.iter().any(|p| p.get("memberIds").is_some()),
        Err(e) => {
            tracing::warn!(error = %e, "could not look for a running refresh");
            false
        }
    }
}

/// Whether a full pass of `kind` (no `memberIds`) is queued for the account
/// and due now (one queued for later does not count).
async fn full_pass_due(
    db: &DatabaseConnection,
    account: Uuid,
    kind: JobKind,
) -> Result<bool, sea_orm::DbErr> {
    let queued = super::due_params(db, account, kind, &[super::status::QUEUED]).await?;
    Ok(queued.iter().any(|p| {
        p.get("memberIds").is_none_or(Value::is_null)
            && p.get("buildPersonas") != Some(&Value::Bool(false))
    }))
}
