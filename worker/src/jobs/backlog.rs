//! The job backlog across every process, read from `job_run` (the queue
//! storage differs by deployment; our table does not): how many jobs of
//! each kind wait or run, and how long the oldest due one has waited. What
//! an operator alerts on when workers stall or fall behind.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use entity::job_run;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, Func},
};

use super::status;

/// One kind's backlog.
#[derive(Debug, Clone, PartialEq)]
pub struct Backlog {
    pub kind: String,
    /// QUEUED, due or not.
    pub queued: i64,
    pub running: i64,
    /// Seconds the oldest QUEUED job whose `run_at` has come has waited;
    /// 0 when none is due.
    pub oldest_due_secs: f64,
}

/// Every kind with a QUEUED or RUNNING job, sorted by kind name.
///
/// # Errors
/// Database errors.
pub async fn read(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Vec<Backlog>, DbErr> {
    let counts: Vec<(String, String, i64)> = job_run::Entity::find()
        .select_only()
        .column(job_run::Column::Kind)
        .column(job_run::Column::Status)
        .column_as(Expr::from(Func::count(Expr::col(job_run::Column::Id))), "n")
        .filter(job_run::Column::Status.is_in([status::QUEUED, status::RUNNING]))
        .group_by(job_run::Column::Kind)
        .group_by(job_run::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let oldest: Vec<(String, Option<DateTime<Utc>>)> = job_run::Entity::find()
        .select_only()
        .column(job_run::Column::Kind)
        .column_as(
            Expr::from(Func::min(Expr::col(job_run::Column::RunAt))),
            "oldest",
        )
        .filter(job_run::Column::Status.eq(status::QUEUED))
        .filter(job_run::Column::RunAt.lte(now))
        .group_by(job_run::Column::Kind)
        .into_tuple()
        .all(db)
        .await?;
    let mut by_kind: BTreeMap<String, Backlog> = BTreeMap::new();
    for (kind, st, n) in counts {
        let b = by_kind.entry(kind.clone()).or_insert(Backlog {
            kind,
            queued: 0,
            running: 0,
            oldest_due_secs: 0.0,
        });
        if st == status::QUEUED {
            b.queued = n;
        } else {
            b.running = n;
        }
    }
    for (kind, at) in oldest {
        if let (Some(b), Some(at)) = (by_kind.get_mut(&kind), at) {
            b.oldest_due_secs = ((now - at).num_milliseconds() as f64 / 1000.0).max(0.0);
        }
    }
    Ok(by_kind.into_values().collect())
}
