//! One message sent (or attempted) to one member; never sent twice.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub campaign_id: Uuid,
    pub member_id: Uuid,
    pub content_id: Option<Uuid>,
    pub variant_id: Option<Uuid>,
    /// Unique per account: campaign + member + window.
    pub idempotency_key: String,
    /// PENDING | SENT | DELIVERED | FAILED | SKIPPED
    pub status: String,
    pub score: Option<f64>,
    pub error: Option<String>,
    pub sent_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
