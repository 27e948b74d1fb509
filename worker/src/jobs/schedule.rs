//! Time-driven jobs: the nightly persona rebuild of every account, and the
//! debounced refresh of members whose data just changed.
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, FixedOffset, NaiveTime, TimeZone, Utc};
use entity::account;
use sea_orm::{DatabaseConnection, EntityTrait, QuerySelect};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{JobKind, JobQueue, enqueue, enqueue::NewJob};

/// 03:00 China Standard Time: the quiet hour.
const NIGHTLY_AT: (u32, u32) = (3, 0);

/// The next nightly run after `now`, as (run time, date key).
pub fn next_nightly(now: DateTime<Utc>) -> (DateTime<Utc>, String) {
    let cst = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    let local = now.with_timezone(&cst);
    let at = NaiveTime::from_hms_opt(NIGHTLY_AT.0, NIGHTLY_AT.1, 0).expect("valid time");
    let mut day = local.date_naive();
    if local.time() >= at {
        day = day.succ_opt().unwrap_or(day);
    }
    let run = cst
        .from_local_datetime(&day.and_time(at))
        .single()
        .map_or(now, |d| d.with_timezone(&Utc));
    (run, day.format("%Y-%m-%d").to_string())
}

/// Makes sure every account has its next nightly persona rebuild queued.
/// The schedule key makes this safe from any number of processes.
///
/// # Errors
/// Database or queue errors.
pub async fn ensure_nightly(db: &DatabaseConnection, queue: &JobQueue) -> anyhow::Result<usize> {
    let (run_at, day) = next_nightly(Utc::now());
    let accounts: Vec<Uuid> = account::Entity::find()
        .select_only()
        .column(account::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    let mut queued = 0;
    for a in accounts {
        let job = NewJob {
            run_at: Some(run_at),
            schedule_key: Some(format!("nightly-personas:{a}:{day}")),
            ..NewJob::now(a, JobKind::BuildPersonas, json!({}))
        };
        if enqueue(db, queue, job)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .is_some()
        {
            queued += 1;
        }
    }
    Ok(queued)
}

/// Collects members whose messages or events changed and, after a short
/// quiet period, queues one refresh job per account for exactly them.
#[derive(Clone)]
pub struct Refresher {
    pending: Arc<Mutex<HashMap<Uuid, HashSet<Uuid>>>>,
}

/// How long changes are collected before one job is queued.
pub const DEBOUNCE: Duration = Duration::from_millis(800);
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
            loop {
                tokio::time::sleep(DEBOUNCE).await;
                let batch: HashMap<Uuid, HashSet<Uuid>> = match pending.lock() {
                    Ok(mut p) => std::mem::take(&mut *p),
                    Err(_) => break,
                };
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
                            json!({ "memberIds": ids, "buildPersonas": true }),
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

/// Whether a full pass of `kind` (no `memberIds`) is queued for the account
/// and due now (the nightly one, queued for 03:00, does not count).
async fn full_pass_due(
    db: &DatabaseConnection,
    account: Uuid,
    kind: JobKind,
) -> Result<bool, sea_orm::DbErr> {
    use entity::job_run;
    use sea_orm::{ColumnTrait, QueryFilter};
    let queued = job_run::Entity::find()
        .filter(job_run::Column::AccountId.eq(account))
        .filter(job_run::Column::Kind.eq(kind.as_str()))
        .filter(job_run::Column::Status.eq(super::status::QUEUED))
        .filter(job_run::Column::RunAt.lte(Utc::now()))
        .all(db)
        .await?;
    Ok(queued.iter().any(|j| {
        j.params.get("memberIds").is_none_or(Value::is_null)
            && j.params.get("buildPersonas") != Some(&Value::Bool(false))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nightly_is_the_next_3am_in_china() {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap(); // 20:00 CST
        let (run, day) = next_nightly(now);
        assert_eq!(day, "2026-11-28");
        assert_eq!(run, Utc.with_ymd_and_hms(2026, 11, 27, 19, 0, 0).unwrap());
        let early = Utc.with_ymd_and_hms(2026, 11, 27, 18, 0, 0).unwrap(); // 02:00 CST on the 28th
        assert_eq!(next_nightly(early).1, "2026-11-28");
    }
}
