//! The debounced refresh of members whose data just changed (recurring jobs,
//! the nightly persona rebuild among them, are in [`super::recurring`]).
//!
//! A change records its members in `member_touch` in its own transaction
//! ([`touch`]): an outbox, so a touch commits with the data, survives a
//! stop of the process that wrote it, and is flushed by whichever API
//! process looks first. The task that [`start`] runs in each API process
//! turns an account's touches into one refresh job once the account has
//! been quiet for [`QUIET`] (at most [`MAX_WAIT`] after the first touch),
//! under a lock, so that processes flushing at once queue one job, not two.
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::member_touch;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, OnConflict, Query},
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{JobKind, JobQueue, enqueue, enqueue::NewJob};

/// How often each API process looks for touched members.
pub const TICK: Duration = Duration::from_millis(400);
/// An account's touches wait for this long without a new one (a trailing
/// debounce): the chunks of an import, or the messages of a conversation,
/// share one refresh, which does not compete with the import's writes.
pub const QUIET: Duration = Duration::from_millis(800);
/// ... but not longer than this after the first, so that a steady stream
/// of changes still refreshes.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// How long a refresh waits at most for the account's running one.
pub const MAX_HOLD: Duration = Duration::from_secs(60);
/// Above this many touched members a refresh is one pass over the account.
pub const FULL_REFRESH_ABOVE: usize = 5_000;
/// Advisory-lock key of the flush ("lingxi:refresh").
const REFRESH_LOCK: i64 = 0x6c78_7266_0001;
/// Rows per insert statement (4 parameters each; SQLite allows 32,766).
const TOUCH_CHUNK: usize = 1_000;

/// Records, in the caller's transaction, that these members' messages,
/// events or relations changed: their persona is refreshed shortly after
/// the transaction commits, and not at all if it rolls back.
///
/// # Errors
/// Database errors.
pub async fn touch(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    members: &[Uuid],
) -> Result<(), sea_orm::DbErr> {
    let now = Utc::now();
    let mut members = members.to_vec();
    members.sort_unstable();
    members.dedup();
    for chunk in members.chunks(TOUCH_CHUNK) {
        let rows = chunk.iter().map(|&member_id| member_touch::ActiveModel {
            account_id: sea_orm::Set(account_id),
            member_id: sea_orm::Set(member_id),
            first_touched_at: sea_orm::Set(now),
            last_touched_at: sea_orm::Set(now),
        });
        // a member already waiting keeps its first touch
        let mut again = OnConflict::columns([
            member_touch::Column::AccountId,
            member_touch::Column::MemberId,
        ]);
        again.update_column(member_touch::Column::LastTouchedAt);
        member_touch::Entity::insert_many(rows)
            .on_conflict(again)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Drops the account's touches: for a caller that has just queued a pass
/// over the whole account, which reads their data anyway.
///
/// # Errors
/// Database errors.
pub async fn forget(db: &impl ConnectionTrait, account_id: Uuid) -> Result<(), sea_orm::DbErr> {
    member_touch::Entity::delete_many()
        .filter(member_touch::Column::AccountId.eq(account_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Starts the task that turns touches into refresh jobs. With `analysis`,
/// refreshes analyse the new texts and rebuild the personas; without
/// models, personas only.
pub fn start(db: DatabaseConnection, queue: JobQueue, analysis: bool) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(TICK).await;
            let waiting = match waiting_accounts(&db).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the members waiting for a refresh");
                    continue;
                }
            };
            let now = Utc::now();
            for w in waiting.iter().filter(|w| w.due(now)) {
                if let Err(e) = flush(&db, &queue, w, analysis, now).await {
                    // the touches stay for the next tick
                    tracing::warn!(error = %e, "could not queue a persona refresh");
                }
            }
        }
    });
}

/// An account's touched members.
#[derive(Debug)]
struct Waiting {
    account: Uuid,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    members: i64,
}

impl Waiting {
    /// Quiet for [`QUIET`], or waiting since [`MAX_WAIT`].
    fn due(&self, now: DateTime<Utc>) -> bool {
        now - self.last >= delta(QUIET) || now - self.first >= delta(MAX_WAIT)
    }
}

fn delta(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Accounts with touched members.
async fn waiting_accounts(db: &DatabaseConnection) -> Result<Vec<Waiting>, sea_orm::DbErr> {
    let rows: Vec<(Uuid, DateTime<Utc>, DateTime<Utc>, i64)> = member_touch::Entity::find()
        .select_only()
        .column(member_touch::Column::AccountId)
        .column_as(member_touch::Column::FirstTouchedAt.min(), "first")
        .column_as(member_touch::Column::LastTouchedAt.max(), "last")
        .column_as(member_touch::Column::MemberId.count(), "members")
        .group_by(member_touch::Column::AccountId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(account, first, last, members)| Waiting {
            account,
            first,
            last,
            members,
        })
        .collect())
}

/// What a flush did with an account's touches.
#[derive(Debug, PartialEq, Eq)]
enum Flushed {
    /// Left waiting for the account's running refresh.
    Held,
    /// A queued pass over the whole account will read them.
    InFullPass,
    /// Added to the account's queued refresh.
    Merged,
    /// A new refresh job.
    Queued,
    /// Nothing was waiting (another process took them).
    Nothing,
}

/// Two refreshes at once would both analyse the new messages (each reads
/// those not analysed yet): touches wait for the running one (a refresh
/// or a pass over the account), which may take the newest messages along,
/// and become one refresh after it. Bounded, so a long pass or a dead
/// worker's job cannot keep members stale.
fn held(due: &[DueJob], first: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - first < delta(MAX_HOLD) && due.iter().any(|j| !j.queued())
}

/// How much later than the last touch a pass must have started to count
/// as having read it: the API's and the worker's clocks may differ.
const CLOCK_MARGIN: Duration = Duration::from_secs(2);

/// A running pass over the account that started after the last touch
/// reads every touched member's data: nothing to queue (the demo's seed,
/// say, whose full analysis starts right after its imports).
fn covered(due: &[DueJob], last: DateTime<Utc>) -> bool {
    due.iter().any(|j| {
        !j.queued()
            && is_full_pass(&j.params)
            && j.started_at.is_some_and(|s| s - last > delta(CLOCK_MARGIN))
    })
}

/// Turns the account's touches into a refresh, under the flush lock:
/// another process flushing the same account waits, then finds the
/// touches gone or the job this one queued.
async fn flush(
    db: &DatabaseConnection,
    queue: &JobQueue,
    w: &Waiting,
    analysis: bool,
    now: DateTime<Utc>,
) -> Result<Flushed, enqueue::EnqueueError> {
    let kind = if analysis {
        JobKind::AnalyzeTexts
    } else {
        JobKind::BuildPersonas
    };
    // Checked before taking the lock too, which a held account would
    // otherwise take on every tick.
    let due = due_jobs(db, w.account, kind).await?;
    if !covered(&due, w.last) && held(&due, w.first, now) {
        return Ok(Flushed::Held);
    }
    let tx = crate::config::begin_exclusive(db, REFRESH_LOCK).await?;
    let due = due_jobs(&tx, w.account, kind).await?;
    let covered = covered(&due, w.last);
    if !covered && held(&due, w.first, now) {
        tx.rollback().await?;
        return Ok(Flushed::Held);
    }
    // With `covered`, only the touches read above go (a later one stays).
    let all = !covered && w.members > FULL_REFRESH_ABOVE as i64;
    let members = take_touches(&tx, w.account, all, covered.then_some(w.last)).await?;
    let flushed = match &members {
        Some(m) if m.is_empty() => Flushed::Nothing,
        _ if covered || due.iter().any(|j| j.queued() && is_full_pass(&j.params)) => {
            Flushed::InFullPass
        }
        _ => {
            // A refresh that waits for a worker takes these members along:
            // one job, and no two that could start together on the same
            // members.
            let waiting = due
                .iter()
                .find(|j| j.queued() && is_refresh(&j.params, analysis));
            match waiting {
                Some(j) if merge(&tx, j, members.as_deref()).await? => Flushed::Merged,
                // none, or a worker claimed it since it was read
                _ => {
                    let ids = members.map_or(Value::Null, member_ids);
                    let job = NewJob::now(w.account, kind, refresh_params(analysis, ids));
                    let staged = enqueue::stage(&tx, job).await?;
                    tx.commit().await?;
                    // Committed: a process that stops before handing it
                    // over leaves it to `release_stranded`.
                    enqueue::release(db, queue, &staged.into_iter().collect::<Vec<_>>()).await;
                    return Ok(Flushed::Queued);
                }
            }
        }
    };
    tx.commit().await?;
    Ok(flushed)
}

/// Removes the account's touches and returns their members: exactly the
/// rows deleted, so a touch committed meanwhile stays for the next flush.
/// With `all`, for a pass over the whole account, returns `None`: every
/// touch deleted was committed, so the pass reads its data. With `until`,
/// deletes only the touches last touched by then (a running pass read
/// them) and returns `None`.
async fn take_touches(
    db: &impl ConnectionTrait,
    account: Uuid,
    all: bool,
    until: Option<DateTime<Utc>>,
) -> Result<Option<Vec<Uuid>>, sea_orm::DbErr> {
    if let Some(last) = until {
        member_touch::Entity::delete_many()
            .filter(member_touch::Column::AccountId.eq(account))
            .filter(member_touch::Column::LastTouchedAt.lte(last))
            .exec(db)
            .await?;
        return Ok(None);
    }
    if all {
        forget(db, account).await?;
        return Ok(None);
    }
    let delete = Query::delete()
        .from_table(member_touch::Entity)
        .and_where(member_touch::Column::AccountId.eq(account))
        .returning_col(member_touch::Column::MemberId)
        .to_owned();
    let rows = db
        .query_all_raw(db.get_database_backend().build(&delete))
        .await?;
    rows.iter()
        .map(|r| r.try_get_by_index::<Uuid>(0))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// A queued or running job of the refresher's kind for an account, due now.
struct DueJob {
    id: Uuid,
    status: String,
    params: Value,
    updated_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
}

impl DueJob {
    fn queued(&self) -> bool {
        self.status == super::status::QUEUED
    }
}

/// The account's jobs of `kind` that are running, or queued and due now
/// (one queued for later does not count).
async fn due_jobs(
    db: &impl ConnectionTrait,
    account: Uuid,
    kind: JobKind,
) -> Result<Vec<DueJob>, sea_orm::DbErr> {
    use entity::job_run;
    type Row = (
        Uuid,
        String,
        Value,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = job_run::Entity::find()
        .select_only()
        .column(job_run::Column::Id)
        .column(job_run::Column::Status)
        .column(job_run::Column::Params)
        .column(job_run::Column::UpdatedAt)
        .column(job_run::Column::StartedAt)
        .filter(job_run::Column::AccountId.eq(account))
        .filter(job_run::Column::Kind.eq(kind.as_str()))
        .filter(job_run::Column::Status.is_in([super::status::QUEUED, super::status::RUNNING]))
        .filter(job_run::Column::RunAt.lte(Utc::now()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, status, params, updated_at, started_at)| DueJob {
            id,
            status,
            params,
            updated_at,
            started_at,
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
fn member_ids(members: impl IntoIterator<Item = Uuid>) -> Value {
    let mut ids: Vec<Uuid> = members.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.len() > FULL_REFRESH_ABOVE {
        return Value::Null;
    }
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
/// true when added. With `None`, or past [`FULL_REFRESH_ABOVE`] members,
/// it becomes a pass over the account.
async fn merge(
    db: &impl ConnectionTrait,
    job: &DueJob,
    members: Option<&[Uuid]>,
) -> Result<bool, sea_orm::DbErr> {
    use entity::job_run;
    let mut params = job.params.clone();
    if let Some(members) = members {
        let mut ids: std::collections::HashSet<Uuid> = job.params["memberIds"]
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
        params["memberIds"] = member_ids(ids);
    } else {
        params["memberIds"] = Value::Null;
    }
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
    use crate::jobs::testing;

    async fn jobs(db: &DatabaseConnection) -> Vec<entity::job_run::Model> {
        use sea_orm::QueryOrder;
        entity::job_run::Entity::find()
            .order_by_asc(entity::job_run::Column::Id)
            .all(db)
            .await
            .unwrap()
    }

    async fn touches(db: &DatabaseConnection) -> i64 {
        testing::count(db, "SELECT COUNT(*) FROM member_touch").await
    }

    fn ids(j: &entity::job_run::Model) -> Vec<Uuid> {
        serde_json::from_value(j.params["memberIds"].clone()).unwrap()
    }

    /// The one account waiting.
    async fn waiting(db: &DatabaseConnection, account: Uuid) -> Waiting {
        let mut w = waiting_accounts(db).await.unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].account, account);
        w.remove(0)
    }

    #[test]
    fn touches_wait_for_a_quiet_moment_but_not_forever() {
        let t = Utc::now();
        let ms = chrono::Duration::milliseconds;
        let w = |first, last| Waiting {
            account: Uuid::nil(),
            first,
            last,
            members: 1,
        };
        assert!(!w(t, t).due(t + ms(799)));
        assert!(w(t, t).due(t + ms(800)));
        // an import's chunks keep touching: it waits
        assert!(!w(t, t + ms(9_000)).due(t + ms(9_500)));
        // ... up to MAX_WAIT after the first touch
        assert!(w(t, t + ms(9_900)).due(t + ms(10_000)));
    }

    #[tokio::test]
    async fn touches_become_one_refresh_that_waits_for_the_running_one() {
        use sea_orm::TransactionTrait;
        let dir = tempfile::tempdir().unwrap();
        let (db, queue, account) = testing::open(dir.path()).await;
        let mut m: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        m.sort_unstable();

        // a change that rolls back touches no one
        let tx = db.begin().await.unwrap();
        touch(&tx, account, &m[..1]).await.unwrap();
        tx.rollback().await.unwrap();
        assert!(waiting_accounts(&db).await.unwrap().is_empty());

        // touched twice: waiting once, since the first touch, until the last
        touch(&db, account, &m[..2]).await.unwrap();
        let before = waiting(&db, account).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        touch(&db, account, &m[..1]).await.unwrap();
        let w = waiting(&db, account).await;
        assert_eq!((w.members, w.first), (2, before.first));
        assert!(w.last > before.last, "{w:?}");
        let now = Utc::now();
        let flushed = flush(&db, &queue, &w, false, now).await.unwrap();
        assert_eq!(flushed, Flushed::Queued);
        let j = jobs(&db).await;
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].kind, JobKind::BuildPersonas.as_str());
        assert_eq!(ids(&j[0]), m[..2]);
        assert_eq!(touches(&db).await, 0);

        // a later touch joins the job while it waits for a worker
        touch(&db, account, &m[2..3]).await.unwrap();
        let w = waiting(&db, account).await;
        let flushed = flush(&db, &queue, &w, false, now).await.unwrap();
        assert_eq!(flushed, Flushed::Merged);
        let j = jobs(&db).await;
        assert_eq!(j.len(), 1);
        assert_eq!(ids(&j[0]), m[..3]);

        // once a worker runs it, new touches wait for it ...
        db.execute_unprepared("UPDATE job_run SET status = 'RUNNING'")
            .await
            .unwrap();
        touch(&db, account, &m[3..]).await.unwrap();
        let w = waiting(&db, account).await;
        let flushed = flush(&db, &queue, &w, false, now).await.unwrap();
        assert_eq!(flushed, Flushed::Held);
        assert_eq!(touches(&db).await, 1);
        assert_eq!(jobs(&db).await.len(), 1);
        // ... but not for longer than MAX_HOLD
        let later = w.first + delta(MAX_HOLD);
        let flushed = flush(&db, &queue, &w, false, later).await.unwrap();
        assert_eq!(flushed, Flushed::Queued);
        let j = jobs(&db).await;
        assert_eq!(j.len(), 2);
        assert_eq!(ids(&j[1]), m[3..]);
        assert_eq!(touches(&db).await, 0);
    }

    #[tokio::test]
    async fn flushes_at_once_queue_one_job_and_a_full_pass_takes_many_touches() {
        let dir = tempfile::tempdir().unwrap();
        let (db, queue, account) = testing::open(dir.path()).await;
        let m: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();

        // two processes flushing the same touches at once: one job
        touch(&db, account, &m[..2]).await.unwrap();
        let w = waiting(&db, account).await;
        let now = Utc::now();
        let (a, b) = tokio::join!(
            flush(&db, &queue, &w, true, now),
            flush(&db, &queue, &w, true, now)
        );
        let mut both = [a.unwrap(), b.unwrap()];
        both.sort_by_key(|f| format!("{f:?}"));
        assert_eq!(both, [Flushed::Nothing, Flushed::Queued]);
        let j = jobs(&db).await;
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].kind, JobKind::AnalyzeTexts.as_str());
        assert_eq!(
            j[0].params,
            refresh_params(true, member_ids(m[..2].to_vec()))
        );

        // a queued pass over the whole account will read them anyway
        db.execute_unprepared("DELETE FROM job_run").await.unwrap();
        let full = NewJob::now(account, JobKind::AnalyzeTexts, json!({}));
        enqueue::enqueue(&db, &queue, full).await.unwrap();
        touch(&db, account, &m[2..]).await.unwrap();
        let w = waiting(&db, account).await;
        let flushed = flush(&db, &queue, &w, true, now).await.unwrap();
        assert_eq!(flushed, Flushed::InFullPass);
        assert_eq!(jobs(&db).await.len(), 1);
        assert_eq!(touches(&db).await, 0);

        // past FULL_REFRESH_ABOVE members, one pass over the account
        db.execute_unprepared("DELETE FROM job_run").await.unwrap();
        let many: Vec<Uuid> = (0..=FULL_REFRESH_ABOVE).map(|_| Uuid::now_v7()).collect();
        touch(&db, account, &many).await.unwrap();
        let w = waiting(&db, account).await;
        assert_eq!(w.members, many.len() as i64);
        let flushed = flush(&db, &queue, &w, true, now).await.unwrap();
        assert_eq!(flushed, Flushed::Queued);
        let j = jobs(&db).await;
        assert_eq!(j.len(), 1);
        assert!(is_full_pass(&j[0].params), "{}", j[0].params);
        assert_eq!(touches(&db).await, 0);
    }

    #[tokio::test]
    async fn a_running_pass_that_started_after_the_touches_takes_them() {
        use sea_orm::sea_query::Expr;
        let dir = tempfile::tempdir().unwrap();
        let (db, queue, account) = testing::open(dir.path()).await;
        let m: Vec<Uuid> = (0..2).map(|_| Uuid::now_v7()).collect();
        let full = NewJob::now(account, JobKind::AnalyzeTexts, json!({}));
        enqueue::enqueue(&db, &queue, full).await.unwrap();
        let runs_since = |t: DateTime<Utc>| {
            entity::job_run::Entity::update_many()
                .col_expr(entity::job_run::Column::Status, Expr::value("RUNNING"))
                .col_expr(entity::job_run::Column::StartedAt, Expr::value(t))
                .exec(&db)
        };

        // touched, then the pass started: it reads them
        touch(&db, account, &m[..1]).await.unwrap();
        let w = waiting(&db, account).await;
        runs_since(w.last + chrono::Duration::seconds(3))
            .await
            .unwrap();
        let now = Utc::now();
        let flushed = flush(&db, &queue, &w, true, now).await.unwrap();
        assert_eq!(flushed, Flushed::InFullPass);
        assert_eq!(touches(&db).await, 0);
        assert_eq!(jobs(&db).await.len(), 1);

        // touched while it runs (or too close to its start to tell): wait
        touch(&db, account, &m[1..]).await.unwrap();
        let w = waiting(&db, account).await;
        runs_since(w.last).await.unwrap();
        let flushed = flush(&db, &queue, &w, true, now).await.unwrap();
        assert_eq!(flushed, Flushed::Held);
        assert_eq!(touches(&db).await, 1);
        let later = w.first + delta(MAX_HOLD);
        let flushed = flush(&db, &queue, &w, true, later).await.unwrap();
        assert_eq!(flushed, Flushed::Queued);
        let j = jobs(&db).await;
        assert_eq!(j.len(), 2);
        assert_eq!(ids(&j[1]), m[1..]);
    }

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
