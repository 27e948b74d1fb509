//! A follower of an account; natural key `(account_id, openid)`.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "member")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub openid: String,
    pub unionid: Option<String>,
    pub nickname: Option<String>,
    /// male | female | unknown
    pub gender: String,
    pub age: Option<i32>,
    pub city: Option<String>,
    pub province: Option<String>,
    /// JSON array of strings.
    pub tags: Json,
    pub subscribed: bool,
    /// Marketing consent; sends honour it.
    pub consent: bool,
    pub subscribed_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
