//! Stored scores that a change of sentiment head left behind.
//!
//! Each change of head stages `ANALYZE_TEXTS { stale: true }` for the
//! accounts it concerns ([`NewJob::rescore`]) in its own transaction, so
//! the job is not lost. Scores can still go stale otherwise: a re-analysis
//! already running with the previous head when the head changed, a head
//! change made by a release that did not stage. A full persona rebuild (the nightly one)
//! therefore also looks at the level — analysed messages scored by another
//! head than the one in use — and queues the job when nobody else has, so
//! stale scores last one night at most.
use entity::message;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};
use serde_json::Value;
use uuid::Uuid;

use super::{
    JobError, JobKind,
    enqueue::{NewJob, enqueue},
    execute::JobContext,
    status,
};

/// Queues [`NewJob::rescore`] when the account has analysed messages that
/// `head` (the version it reads with now) did not score, unless a job that
/// will score them is due or running already. Returns the queued job's
/// id.
pub async fn catch_up(
    ctx: &JobContext,
    account: Uuid,
    head: &str,
) -> Result<Option<String>, JobError> {
    if !any_stale(&ctx.db, account, head).await? || rescore_pending(&ctx.db, account).await? {
        return Ok(None);
    }
    tracing::info!(%account, head, "stale sentiment scores found: queueing their re-analysis");
    let j = enqueue(&ctx.db, &ctx.queue, NewJob::rescore(account)).await?;
    Ok(j.map(|j| j.id.to_string()))
}

/// Whether some analysed message of the account was scored by another head
/// than `head` (or by a release that did not record it). Three probes of
/// one index range each: when nothing is stale, as on most nights, none
/// reads a message (docs/benchmarks.md).
pub async fn any_stale(
    db: &impl ConnectionTrait,
    account: Uuid,
    head: &str,
) -> Result<bool, DbErr> {
    for range in crate::analysis::scored_by_another_ranges(head) {
        let one: Option<Uuid> = message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .filter(message::Column::AccountId.eq(account))
            .filter(range)
            .filter(message::Column::AnalyzedAt.is_not_null())
            .limit(1)
            .into_tuple()
            .one(db)
            .await?;
        if one.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a due or running ANALYZE_TEXTS job of the account will take
/// every stale message: one over all members with `stale` or `reanalyze`.
async fn rescore_pending(db: &impl ConnectionTrait, account: Uuid) -> Result<bool, DbErr> {
    let statuses = [status::QUEUED, status::RUNNING];
    let jobs = super::due_params(db, account, JobKind::AnalyzeTexts, &statuses).await?;
    Ok(jobs.iter().any(takes_every_stale_message))
}

fn takes_every_stale_message(params: &Value) -> bool {
    let flag = |k: &str| params.get(k) == Some(&Value::Bool(true));
    params.get("memberIds").is_none_or(Value::is_null) && (flag("stale") || flag("reanalyze"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::takes_every_stale_message as takes;

    #[test]
    fn only_a_whole_account_stale_or_full_pass_counts_as_pending() {
        assert!(takes(&json!({ "stale": true })));
        assert!(takes(&json!({ "reanalyze": true, "memberIds": null })));
        assert!(!takes(&json!({})), "new messages only");
        assert!(!takes(&json!({ "stale": false })));
        assert!(
            !takes(&json!({ "stale": true, "memberIds": [] })),
            "some members only"
        );
    }
}
