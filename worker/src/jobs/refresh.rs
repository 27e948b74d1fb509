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
                    let due = match due_jobs(&db, account, kind).await {
                        Ok(due) => due,
                        Err(e) => {
                            // queued rather than held or merged
                            tracing::warn!(error = %e, "could not look for the account's refreshes");
                            Vec::new()
                        }
                    };
                    // A full pass that has not started yet will read these
                    // members' new data anyway.
                    if due.iter().any(|j| j.queued() && is_full_pass(&j.params)) {
                        continue;
                    }
                    // Two refreshes at once would both analyse the new
                    // messages (each reads those not analysed yet): wait
                    // for the running one, which may take the newest
                    // messages along, and queue one refresh for everything
                    // touched meanwhile. Bounded, so a long pass or a dead
                    // worker's job cannot keep members stale.
                    let t = since.get(&account).copied().unwrap_or_else(Instant::now);
                    if t.elapsed() < MAX_HOLD
                        && due
                            .iter()
                            .any(|j| !j.queued() && j.params.get("memberIds").is_some())
                    {
                        held.insert(account, (members, t));
                        continue;
                    }
                    // A refresh that waits for a worker takes these members
                    // along: one job, and no two that could start together
                    // on the same members (also across processes).
                    if let Some(j) = due
                        .iter()
                        .find(|j| j.queued() && is_refresh(&j.params, analysis))
                    {
                        match merge(&db, j, &members).await {
                            Ok(true) => continue,
                            Ok(false) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "could not add to a queued refresh")
                            }
                        }
                    }
                    let job =
                        NewJob::now(account, kind, refresh_params(analysis, member_ids(members)));
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

/// A queued or running job of the refresher's kind for an account, due now.
struct DueJob {
    id: Uuid,
    status: String,
    params: Value,
    updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl DueJob {
    fn queued(&self) -> bool {
        self.status == super::status::QUEUED
    }
}

/// The account's jobs of `kind` that are running, or queued and due now
/// (one queued for later does not count): one read per account and flush.
async fn due_jobs(
    db: &DatabaseConnection,
    account: Uuid,
    kind: JobKind,
) -> Result<Vec<DueJob>, sea_orm::DbErr> {
    use entity::job_run;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
    let rows: Vec<(Uuid, String, Value, Option<chrono::DateTime<chrono::Utc>>)> =
        job_run::Entity::find()
            .select_only()
            .column(job_run::Column::Id)
            .column(job_run::Column::Status)
            .column(job_run::Column::Params)
            .column(job_run::Column::UpdatedAt)
            .filter(job_run::Column::AccountId.eq(account))
            .filter(job_run::Column::Kind.eq(kind.as_str()))
            .filter(job_run::Column::Status.is_in([super::status::QUEUED, super::status::RUNNING]))
            .filter(job_run::Column::RunAt.lte(chrono::Utc::now()))
            .into_tuple()
            .all(db)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, status, params, updated_at)| DueJob {
            id,
            status,
            params,
            updated_at,
        })
        .collect())
}

/// A pass over the whole account (no `memberIds`) that rebuilds personas.
fn is_full_pass(p: &Value) -> bool {
    p.get("memberIds").is_none_or(Value::is_null)
        && p.get("buildPersonas") != Some(&Value::Bool(false))
}

/// Params as the refresher writes them (`refresh_params`), for some members.
fn is_refresh(p: &Value, analysis: bool) -> bool {
    let Some(obj) = p.as_object() else {
        return false;
    };
    let mut shape = refresh_params(analysis, Value::Null);
    shape["memberIds"] = obj.get("memberIds").cloned().unwrap_or(Value::Null);
    obj.get("memberIds").is_some_and(Value::is_array) && *p == shape
}

/// A refresh's `memberIds`: the members, sorted, or null (a pass over the
/// account) past [`FULL_REFRESH_ABOVE`]: a bulk import touches many
/// members, and one full pass is far cheaper than a refresh per member.
fn member_ids(members: HashSet<Uuid>) -> Value {
    if members.len() > FULL_REFRESH_ABOVE {
        return Value::Null;
    }
    let mut ids: Vec<Uuid> = members.into_iter().collect();
    ids.sort_unstable();
    json!(ids)
}

/// The params of a refresh job of `ids` (null: the whole account).
fn refresh_params(analysis: bool, ids: Value) -> Value {
    if analysis {
        // `stale`: these members' messages that a change of head left
        // behind are scored again as well.
        json!({ "memberIds": ids, "buildPersonas": true, "stale": true })
    } else {
        json!({ "memberIds": ids })
    }
}

/// Adds `members` to the queued refresh `job`, unless it changed (a
/// worker took it, or another process added to it) since it was read:
/// true when added. Past [`FULL_REFRESH_ABOVE`] members it becomes a pass
/// over the account.
async fn merge(
    db: &DatabaseConnection,
    job: &DueJob,
    members: &HashSet<Uuid>,
) -> Result<bool, sea_orm::DbErr> {
    use entity::job_run;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let mut ids: HashSet<Uuid> = job.params["memberIds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str()?.parse().ok())
        .collect();
    let before = ids.len();
    ids.extend(members.iter().copied());
    if ids.len() == before {
        return Ok(true);
    }
    let mut params = job.params.clone();
    params["memberIds"] = member_ids(ids);
    let mut update = job_run::Entity::update_many()
        .col_expr(job_run::Column::Params, Expr::value(params))
        .col_expr(job_run::Column::UpdatedAt, Expr::value(chrono::Utc::now()))
        .filter(job_run::Column::Id.eq(job.id))
        .filter(job_run::Column::Status.eq(super::status::QUEUED));
    update = match job.updated_at {
        Some(t) => update.filter(job_run::Column::UpdatedAt.eq(t)),
        None => update.filter(job_run::Column::UpdatedAt.is_null()),
    };
    Ok(update.exec(db).await?.rows_affected == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_refreshers_own_jobs_take_more_members() {
        let ids = json!([Uuid::nil()]);
        for analysis in [true, false] {
            assert!(is_refresh(&refresh_params(analysis, ids.clone()), analysis));
            // a pass over the account is not a refresh of some members
            assert!(!is_refresh(
                &refresh_params(analysis, Value::Null),
                analysis
            ));
        }
        // what a person queued with other settings keeps its own members
        for p in [
            json!({ "memberIds": ids, "buildPersonas": false, "stale": true }),
            json!({ "memberIds": ids, "buildPersonas": true, "stale": true, "reanalyze": true }),
            json!({ "memberIds": ids }),
        ] {
            assert!(!is_refresh(&p, true), "{p}");
        }
        assert!(!is_refresh(&refresh_params(true, ids.clone()), false));
    }

    #[test]
    fn a_full_pass_rebuilds_personas_over_the_account() {
        assert!(is_full_pass(&json!({})));
        assert!(is_full_pass(&json!({ "memberIds": null, "stale": true })));
        assert!(!is_full_pass(&json!({ "memberIds": [] })));
        assert!(!is_full_pass(&json!({ "buildPersonas": false })));
    }
}
