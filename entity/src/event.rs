//! Something a member did (view, click, share, purchase, subscribe, ...).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "event")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub member_id: Uuid,
    pub kind: String,
    pub at: DateTimeUtc,
    pub content_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    pub value: Option<f64>,
    /// Hash of the natural key (member, kind, at, content, campaign): re-importing is a no-op.
    pub natural_key: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
