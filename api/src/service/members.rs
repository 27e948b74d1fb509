//! Member lifecycle beyond imports: erasure.
use entity::{
    delivery, event, member, member_touch, message, persona, relation, sentiment_example,
};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;
use worker::registry::{self, kind};

use crate::{context::AppState, error::AppResult, tenant};

/// Erases a member everywhere in the database: their events, messages,
/// friend edges (in both directions), persona, deliveries and the
/// sentiment examples made of their messages, then the member. One
/// transaction: all or nothing.
///
/// A head the account trained on its examples may have learned from the
/// member's labels: every own version recorded since their first example
/// goes too (row and file; the account reads with the platform's head if
/// the active one went), and the account's head is retrained on the rest
/// when enough remain. Those jobs are staged in the transaction and queued
/// after it commits ([`worker::jobs::enqueue::stage`]).
///
/// # Errors
/// `NOT_FOUND` when the member is not in this account; database errors.
pub async fn erase(
    state: &AppState,
    account_id: Uuid,
    member_id: Uuid,
) -> AppResult<member::Model> {
    let db = &state.db;
    // Under the registry's lock: a retrain recording a head now either
    // finishes first (and its version is forgotten here) or sees the
    // examples gone and trains again.
    let txn = registry::begin_locked(db).await?;
    let m = tenant::get::<member::Entity>(&txn, account_id, member_id).await?;
    event::Entity::delete_many()
        .filter(event::Column::AccountId.eq(account_id))
        .filter(event::Column::MemberId.eq(m.id))
        .exec(&txn)
        .await?;
    message::Entity::delete_many()
        .filter(message::Column::AccountId.eq(account_id))
        .filter(message::Column::MemberId.eq(m.id))
        .exec(&txn)
        .await?;
    let first_example = sentiment_example::Entity::find()
        .filter(sentiment_example::Column::AccountId.eq(account_id))
        .filter(sentiment_example::Column::MemberId.eq(m.id))
        .order_by_asc(sentiment_example::Column::CreatedAt)
        .one(&txn)
        .await?;
    sentiment_example::Entity::delete_many()
        .filter(sentiment_example::Column::AccountId.eq(account_id))
        .filter(sentiment_example::Column::MemberId.eq(m.id))
        .exec(&txn)
        .await?;
    let forgotten = match &first_example {
        Some(e) => {
            registry::forget_account_since(&txn, kind::SENTIMENT, account_id, e.created_at).await?
        }
        None => Vec::new(),
    };
    // Committed with the erasure, so a process that dies after the commit
    // does not lose them.
    let follow_up = super::sentiment::stage_after_forgetting(&txn, account_id, &forgotten).await?;
    relation::Entity::delete_many()
        .filter(relation::Column::AccountId.eq(account_id))
        .filter(
            Condition::any()
                .add(relation::Column::MemberId.eq(m.id))
                .add(relation::Column::FriendOpenid.eq(m.openid.clone())),
        )
        .exec(&txn)
        .await?;
    persona::Entity::delete_many()
        .filter(persona::Column::AccountId.eq(account_id))
        .filter(persona::Column::MemberId.eq(m.id))
        .exec(&txn)
        .await?;
    delivery::Entity::delete_many()
        .filter(delivery::Column::AccountId.eq(account_id))
        .filter(delivery::Column::MemberId.eq(m.id))
        .exec(&txn)
        .await?;
    member_touch::Entity::delete_many()
        .filter(member_touch::Column::AccountId.eq(account_id))
        .filter(member_touch::Column::MemberId.eq(m.id))
        .exec(&txn)
        .await?;
    member::Entity::delete_many()
        .filter(member::Column::AccountId.eq(account_id))
        .filter(member::Column::Id.eq(m.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    tracing::info!(heads_forgotten = forgotten.len(), "member erased");
    // The erasure is committed: what follows must not report it failed.
    if !forgotten.is_empty()
        && let Err(e) = super::sentiment::forget_heads(state, &forgotten, &follow_up).await
    {
        tracing::warn!(error = %e, "after an erasure: forgotten heads not followed up");
    }
    Ok(m)
}
