//! Keeping the index equal to the database: per-member sync after persona
//! changes and erasure, and the full rebuild of `INDEX_PERSONAS`.
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Search, SearchError, doc};
use crate::{
    jobs::{JobError, execute::Progress},
    sentiment::Thresholds,
};

/// Documents per rebuild batch.
const PAGE: u64 = 2_000;

impl From<SearchError> for JobError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::Invalid(m) => JobError::Permanent(m),
            other => JobError::Transient(other.into()),
        }
    }
}

/// Makes the index agree with the database for these members: upserts the
/// ones that exist, removes the ones that do not (erased). `band` labels
/// persona sentiment ([`doc::build`]).
///
/// # Errors
/// Database or backend errors (transient).
pub async fn members(
    search: &Search,
    db: &DatabaseConnection,
    account_id: Uuid,
    ids: &[Uuid],
    band: Thresholds,
) -> Result<(), JobError> {
    for chunk in ids.chunks(PAGE as usize) {
        let docs = doc::load(db, account_id, chunk, band).await?;
        let present: std::collections::HashSet<Uuid> = docs.iter().map(|d| d.member_id()).collect();
        let gone: Vec<Uuid> = chunk
            .iter()
            .copied()
            .filter(|i| !present.contains(i))
            .collect();
        search.upsert(account_id, docs).await?;
        if !gone.is_empty() {
            search.delete(account_id, &gone).await?;
        }
    }
    Ok(())
}

/// Rebuilds the account's index from the database; readers keep the old
/// index until the new one is complete.
///
/// # Errors
/// `Cancelled`, database or backend errors.
pub async fn rebuild(
    search: &Search,
    db: &DatabaseConnection,
    account_id: Uuid,
    total_members: u64,
    band: Thresholds,
    progress: &Progress,
) -> Result<Value, JobError> {
    let started = std::time::Instant::now();
    // A second of slack: rows stamped just before we start may not be visible yet.
    let since = chrono::Utc::now() - chrono::Duration::seconds(1);
    let mut rebuild = search.rebuild(account_id).await?;
    let mut after = None;
    let mut done = 0u64;
    loop {
        let docs = doc::page(db, account_id, after, PAGE, band).await?;
        let Some(last) = docs.last() else { break };
        after = Some(last.member_id());
        done += docs.len() as u64;
        rebuild.add(docs).await?;
        progress
            .set(done as f64 / total_members.max(done).max(1) as f64 * 0.95)
            .await?;
    }
    let indexed = rebuild.commit().await?;
    // Members that changed while the pages were read: their upserts may have
    // gone to the index the rebuild just replaced.
    let changed = changed_since(db, account_id, since).await?;
    members(search, db, account_id, &changed, band).await?;
    Ok(json!({
        "resynced": changed.len(),
        "indexed": indexed,
        "backend": search.name(),
        "elapsedMs": started.elapsed().as_millis() as u64,
    }))
}

async fn changed_since(
    db: &DatabaseConnection,
    account_id: Uuid,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Uuid>, sea_orm::DbErr> {
    use entity::{member, persona};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
    let mut ids: Vec<Uuid> = member::Entity::find()
        .select_only()
        .column(member::Column::Id)
        .filter(member::Column::AccountId.eq(account_id))
        .filter(member::Column::UpdatedAt.gte(since))
        .into_tuple()
        .all(db)
        .await?;
    ids.extend(
        persona::Entity::find()
            .select_only()
            .column(persona::Column::MemberId)
            .filter(persona::Column::AccountId.eq(account_id))
            .filter(persona::Column::UpdatedAt.gte(since))
            .into_tuple::<Uuid>()
            .all(db)
            .await?,
    );
    ids.sort();
    ids.dedup();
    Ok(ids)
}
