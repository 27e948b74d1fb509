//! Sentiment corrections: a person sets the label of an analysed message.
//! The message shows it from then on, and it becomes one of the account's
//! sentiment examples, which a head retrained for the account learns from.
use chrono::Utc;
use entity::{message, sentiment_example};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;
use worker::sentiment::examples::ExampleLabel;

use super::imports::sentiment_examples::{SOURCE_CORRECTION, example_key, relabel};
use crate::{error::AppResult, tenant};

/// Sets (or with `None` clears) the label of message `id`.
///
/// # Errors
/// `NOT_FOUND` outside this account; database errors.
pub async fn correct(
    db: &sea_orm::DatabaseConnection,
    account_id: Uuid,
    id: Uuid,
    label: Option<ExampleLabel>,
) -> AppResult<message::Model> {
    let txn = worker::config::begin_write(db).await?;
    let m = tenant::get::<message::Entity>(&txn, account_id, id).await?;
    let key = example_key(&m.text);
    match label {
        Some(l) => {
            let now = Utc::now();
            sentiment_example::Entity::insert(sentiment_example::ActiveModel {
                id: Set(Uuid::now_v7()),
                account_id: Set(account_id),
                member_id: Set(Some(m.member_id)),
                message_id: Set(Some(m.id)),
                text: Set(m.text.trim().to_owned()),
                label: Set(l.as_str().to_owned()),
                source: Set(SOURCE_CORRECTION.to_owned()),
                natural_key: Set(key),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .on_conflict(relabel())
            .exec_without_returning(&txn)
            .await?;
        }
        None => {
            sentiment_example::Entity::delete_many()
                .filter(sentiment_example::Column::AccountId.eq(account_id))
                .filter(sentiment_example::Column::NaturalKey.eq(key))
                .exec(&txn)
                .await?;
        }
    }
    let mut row: message::ActiveModel = m.into();
    row.sentiment_corrected = Set(label.map(|l| l.as_str().to_owned()));
    let m = row.update(&txn).await?;
    txn.commit().await?;
    Ok(m)
}
