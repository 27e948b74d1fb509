//! Tenant scoping: every query of account-owned data starts here, so data of
//! another account is never visible, not even by id.
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PrimaryKeyTrait, QueryFilter, Select};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// An entity with an `account_id` column.
pub trait Owned: EntityTrait {
    fn account_column() -> Self::Column;
    /// The noun used in NOT_FOUND messages.
    const NOUN: &'static str;
}

macro_rules! owned {
    ($($m:ident => $noun:literal),* $(,)?) => {$(
        impl Owned for entity::$m::Entity {
            fn account_column() -> Self::Column { entity::$m::Column::AccountId }
            const NOUN: &'static str = $noun;
        }
    )*};
}

owned!(
    api_key => "api key",
    member => "member",
    event => "event",
    message => "message",
    relation => "relation",
    persona => "persona",
    segment => "segment",
    campaign => "campaign",
    campaign_content => "campaign content",
    content => "content",
    content_variant => "content variant",
    delivery => "delivery",
    job_run => "job",
    job_schedule => "job schedule",
    sentiment_example => "sentiment example",
);

/// `SELECT … WHERE account_id = ?`
pub fn scoped<E: Owned>(account_id: Uuid) -> Select<E> {
    E::find().filter(E::account_column().eq(account_id))
}

/// One row by id, or NOT_FOUND when it does not exist *in this account*.
///
/// # Errors
/// `NotFound`, or database errors.
pub async fn get<E>(db: &impl ConnectionTrait, account_id: Uuid, id: Uuid) -> AppResult<E::Model>
where
    E: Owned,
    <E::PrimaryKey as PrimaryKeyTrait>::ValueType: From<Uuid>,
{
    E::find_by_id(id)
        .filter(E::account_column().eq(account_id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::not_found(E::NOUN, id))
}

/// [`get`] again on every call, mapped by `wrap`, with GraphQL errors: how
/// a subscription re-reads the row it follows.
pub fn reader<E, T>(
    db: sea_orm::DatabaseConnection,
    account_id: Uuid,
    id: Uuid,
    wrap: fn(E::Model) -> T,
) -> impl Fn() -> futures::future::BoxFuture<'static, async_graphql::Result<T>> + Send + 'static
where
    E: Owned,
    <E::PrimaryKey as PrimaryKeyTrait>::ValueType: From<Uuid>,
    T: Send + 'static,
{
    move || {
        let db = db.clone();
        Box::pin(async move {
            get::<E>(&db, account_id, id)
                .await
                .map(wrap)
                .map_err(|e| crate::error::GqlError::from(e).into())
        })
    }
}
