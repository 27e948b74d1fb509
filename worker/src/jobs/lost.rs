//! Queued jobs whose queue entry is gone. A `job_run` row and its entry
//! are written one after the other, not together: a process that dies in
//! between (after enqueueing's insert, after a retry is recorded) leaves a
//! QUEUED job nothing will deliver, and a Redis that keeps nothing on disk
//! loses every entry when it restarts. Workers look through the jobs due a
//! while ago, a page per tick, and queue again those the queue does not
//! hold; a push of a delivery queued already is skipped, so a race with
//! the process that queues it costs nothing.
use chrono::{DateTime, Utc};
use entity::job_run;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::{Delivery, JobQueue, status};

/// Walks the queued jobs a page at a time, from the longest due; it starts
/// over once it reaches the end.
#[derive(Debug)]
pub struct LostEntries {
    /// Jobs looked at per step.
    page: u64,
    /// The last job looked at, by (`run_at`, `id`).
    after: Option<(DateTime<Utc>, Uuid)>,
}

impl Default for LostEntries {
    fn default() -> Self {
        LostEntries {
            page: 500,
            after: None,
        }
    }
}

impl LostEntries {
    /// Looks at the next page of jobs QUEUED (not staged: those are
    /// [`super::enqueue::release_stranded`]'s) and due more than `grace`
    /// ago, and queues again those whose delivery the queue does not hold.
    /// Returns how many it queued again.
    ///
    /// # Errors
    /// The database or the queue cannot be read or written.
    pub async fn step(
        &mut self,
        db: &impl ConnectionTrait,
        queue: &JobQueue,
        grace: std::time::Duration,
    ) -> anyhow::Result<usize> {
        let due_before = Utc::now() - chrono::Duration::from_std(grace)?;
        let mut page = job_run::Entity::find()
            .filter(job_run::Column::Status.eq(status::QUEUED))
            .filter(job_run::Column::Staged.eq(false))
            .filter(job_run::Column::RunAt.lt(due_before));
        if let Some((run_at, id)) = self.after {
            // `run_at >= ?` alone bounds the index range; the OR, which
            // no index range serves, only drops the rows already seen
            // at that very time.
            page = page.filter(job_run::Column::RunAt.gte(run_at)).filter(
                Condition::any()
                    .add(job_run::Column::RunAt.gt(run_at))
                    .add(job_run::Column::Id.gt(id)),
            );
        }
        let jobs = page
            .order_by_asc(job_run::Column::RunAt)
            .order_by_asc(job_run::Column::Id)
            .limit(self.page)
            .all(db)
            .await?;
        self.after = match jobs.last() {
            Some(last) if jobs.len() as u64 == self.page => Some((last.run_at, last.id)),
            _ => None,
        };
        let deliveries: Vec<Delivery> = jobs.iter().map(Delivery::from).collect();
        let present = queue.present(&deliveries).await?;
        let held: Vec<Delivery> = deliveries
            .iter()
            .filter(|d| present.contains(&d.job_id))
            .copied()
            .collect();
        queue.keep(&held).await?;
        let mut queued = 0;
        for d in deliveries
            .into_iter()
            .filter(|d| !present.contains(&d.job_id))
        {
            queue.push(d).await?;
            tracing::warn!(job_id = %d.job_id, "queued job had no queue entry: queued again");
            queued += 1;
        }
        Ok(queued)
    }
}

/// Running jobs looked at per call.
const ABANDONED_BATCH: u64 = 100;

/// Queues again jobs RUNNING in a process that has not said it is alive for
/// `timeout` (it died) when the queue holds none of their deliveries.
/// Usually it holds the one that was running, and hands it to another
/// worker itself (apalis's orphan recovery); a Redis restarted without
/// persistence holds nothing, and such a job would stay RUNNING for ever.
/// Returns how many it queued again.
///
/// # Errors
/// The database or the queue cannot be read or written.
pub async fn abandoned(
    db: &impl ConnectionTrait,
    queue: &JobQueue,
    timeout: std::time::Duration,
) -> anyhow::Result<usize> {
    let silent_since = Utc::now() - chrono::Duration::from_std(timeout)?;
    let jobs = job_run::Entity::find()
        .filter(job_run::Column::Status.eq(status::RUNNING))
        .filter(
            Condition::any()
                .add(job_run::Column::HeartbeatAt.lt(silent_since))
                // Started by a release that wrote no heartbeat.
                .add(
                    Condition::all()
                        .add(job_run::Column::HeartbeatAt.is_null())
                        .add(job_run::Column::StartedAt.lt(silent_since)),
                ),
        )
        .order_by_asc(job_run::Column::StartedAt)
        .limit(ABANDONED_BATCH)
        .all(db)
        .await?;
    // Whichever delivery the job has had may be the one that ran it.
    let deliveries: Vec<Delivery> = jobs
        .iter()
        .flat_map(|j| {
            (0..j.attempts).map(|n| Delivery {
                job_id: j.id,
                attempts: n,
                run_at: j.run_at,
            })
        })
        .collect();
    let present = queue.present(&deliveries).await?;
    let mut queued = 0;
    for j in jobs.iter().filter(|j| !present.contains(&j.id)) {
        // The delivery of its last attempt: a worker takes it over.
        queue
            .push(Delivery {
                job_id: j.id,
                attempts: (j.attempts - 1).max(0),
                run_at: Utc::now(),
            })
            .await?;
        tracing::warn!(job_id = %j.id, "running job abandoned by its process and not in the queue: queued again");
        queued += 1;
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sea_orm::{ActiveModelTrait, Set};
    use serde_json::json;

    use super::*;
    use crate::jobs::{
        JobKind,
        enqueue::{NewJob, enqueue, stage},
        testing::{count, open},
    };

    const GRACE: Duration = Duration::from_secs(10);
    const ENTRIES: &str = "SELECT COUNT(*) FROM Jobs";

    /// Moves a job's time `secs` into the past.
    async fn due_ago(db: &impl ConnectionTrait, job: &job_run::Model, secs: i64) {
        let mut row: job_run::ActiveModel = job.clone().into();
        row.run_at = Set(Utc::now() - chrono::Duration::seconds(secs));
        row.update(db).await.unwrap();
    }

    #[tokio::test]
    async fn a_queued_job_without_its_entry_is_queued_again_once() {
        let dir = tempfile::tempdir().unwrap();
        let (db, queue, account) = open(dir.path()).await;
        let job = || NewJob::now(account, JobKind::BuildPersonas, json!({}));

        // Queued the ordinary way (an entry), and long due.
        let held = enqueue(&db, &queue, job()).await.unwrap().unwrap();
        due_ago(&db, &held, 600).await;
        // Its entry lost.
        let lost = enqueue(&db, &queue, job()).await.unwrap().unwrap();
        due_ago(&db, &lost, 600).await;
        // Also without entries, but not this check's: just due (its enqueuer
        // is pushing), staged (its process releases it), finished.
        let just = enqueue(&db, &queue, job()).await.unwrap().unwrap();
        let staged = stage(&db, job()).await.unwrap().unwrap();
        due_ago(&db, &staged, 600).await;
        let done = enqueue(&db, &queue, job()).await.unwrap().unwrap();
        due_ago(&db, &done, 600).await;
        let mut finished: job_run::ActiveModel = done.clone().into();
        finished.status = Set(status::SUCCEEDED.into());
        finished.update(&db).await.unwrap();
        let sql = "DELETE FROM Jobs WHERE idempotency_key IN (?, ?, ?)";
        let keys = [&lost, &just, &done].map(|j| super::super::queue::entry_key(j.id, 0));
        let queue_pool = match queue.storage() {
            super::super::queue::Storage::Sqlite(s) => s.pool().clone(),
            _ => unreachable!(),
        };
        let mut q = sqlx::query(sql);
        for k in &keys {
            q = q.bind(k);
        }
        assert_eq!(q.execute(&queue_pool).await.unwrap().rows_affected(), 3);
        assert_eq!(count(&db, ENTRIES).await, 1);

        let mut check = LostEntries::default();
        assert_eq!(check.step(&db, &queue, GRACE).await.unwrap(), 1);
        assert_eq!(count(&db, ENTRIES).await, 2);
        let again: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM Jobs WHERE idempotency_key = ?")
            .bind(&keys[0])
            .fetch_one(&queue_pool)
            .await
            .unwrap();
        assert_eq!(again, 1, "the lost job's delivery is the one queued");
        assert_eq!(check.step(&db, &queue, GRACE).await.unwrap(), 0, "once");
        assert_eq!(count(&db, ENTRIES).await, 2);
    }

    #[tokio::test]
    async fn a_running_job_whose_process_went_silent_and_the_queue_lost_is_queued_again() {
        let dir = tempfile::tempdir().unwrap();
        let (db, queue, account) = open(dir.path()).await;
        let timeout = Duration::from_secs(120);
        let long_ago = Some(Utc::now() - chrono::Duration::seconds(600));
        // Running (first attempt), its delivery 0 still in the queue.
        let running = |heartbeat_at: Option<DateTime<Utc>>| {
            let (db, queue) = (&db, &queue);
            async move {
                let j = enqueue(
                    db,
                    queue,
                    NewJob::now(account, JobKind::BuildPersonas, json!({})),
                )
                .await
                .unwrap()
                .unwrap();
                let mut row: job_run::ActiveModel = j.into();
                row.status = Set(status::RUNNING.into());
                row.attempts = Set(1);
                row.started_at = Set(long_ago);
                row.heartbeat_at = Set(heartbeat_at);
                row.update(db).await.unwrap()
            }
        };
        let silent_lost = running(long_ago).await;
        let silent_held = running(long_ago).await; // apalis hands it on
        let alive_lost = running(Some(Utc::now())).await;
        let legacy_lost = running(None).await; // started before heartbeats
        let queue_pool = match queue.storage() {
            super::super::queue::Storage::Sqlite(s) => s.pool().clone(),
            _ => unreachable!(),
        };
        for j in [&silent_lost, &alive_lost, &legacy_lost] {
            sqlx::query("DELETE FROM Jobs WHERE idempotency_key = ?")
                .bind(super::super::queue::entry_key(j.id, 0))
                .execute(&queue_pool)
                .await
                .unwrap();
        }
        assert_eq!(count(&db, ENTRIES).await, 1);

        assert_eq!(abandoned(&db, &queue, timeout).await.unwrap(), 2);
        let held = queue
            .present(
                &[&silent_lost, &silent_held, &alive_lost, &legacy_lost].map(|j| Delivery {
                    job_id: j.id,
                    attempts: 0,
                    run_at: j.run_at,
                }),
            )
            .await
            .unwrap();
        assert_eq!(
            held,
            [&silent_lost, &silent_held, &legacy_lost]
                .map(|j| j.id)
                .into(),
            "the live one is left to its process"
        );
        assert_eq!(abandoned(&db, &queue, timeout).await.unwrap(), 0, "once");
        assert_eq!(count(&db, ENTRIES).await, 3);
    }

    #[tokio::test]
    async fn the_check_goes_a_page_at_a_time_and_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let (db, queue, account) = open(dir.path()).await;
        // Five due jobs, none with an entry (written as a process that
        // died before pushing them leaves them).
        for _ in 0..5 {
            let j = stage(&db, NewJob::now(account, JobKind::BuildPersonas, json!({})))
                .await
                .unwrap()
                .unwrap();
            let mut row: job_run::ActiveModel = j.into();
            row.staged = Set(false);
            row.run_at = Set(Utc::now() - chrono::Duration::seconds(600));
            row.update(&db).await.unwrap();
        }
        let mut check = LostEntries {
            page: 2,
            after: None,
        };
        let steps: Vec<usize> = {
            let mut v = Vec::new();
            for _ in 0..4 {
                v.push(check.step(&db, &queue, GRACE).await.unwrap());
            }
            v
        };
        assert_eq!(steps, [2, 2, 1, 0], "pages of two, then over again");
        assert_eq!(count(&db, ENTRIES).await, 5);
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM job_run WHERE status = 'QUEUED'").await,
            5
        );
    }
}
