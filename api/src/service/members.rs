//! Member lifecycle beyond imports: erasure.
use entity::{delivery, event, member, message, persona, relation, sentiment_example};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::{error::AppResult, tenant};

/// Erases a member everywhere in the database: their events, messages,
/// friend edges (in both directions), persona, deliveries and the
/// sentiment examples made of their messages, then the member. One transaction: all or nothing.
///
/// # Errors
/// `NOT_FOUND` when the member is not in this account; database errors.
pub async fn erase(
    db: &DatabaseConnection,
    account_id: Uuid,
    member_id: Uuid,
) -> AppResult<member::Model> {
    let txn = worker::config::begin_write(db).await?;
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
    sentiment_example::Entity::delete_many()
        .filter(sentiment_example::Column::AccountId.eq(account_id))
        .filter(sentiment_example::Column::MemberId.eq(m.id))
        .exec(&txn)
        .await?;
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
    member::Entity::delete_many()
        .filter(member::Column::AccountId.eq(account_id))
        .filter(member::Column::Id.eq(m.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    tracing::info!("member erased");
    Ok(m)
}
