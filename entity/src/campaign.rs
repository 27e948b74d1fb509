//! A campaign and its status machine (see `api::campaigns::status`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "campaign")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub name: String,
    /// AWARENESS | ENGAGEMENT | CONVERSION | RETENTION
    pub objective: String,
    /// OFFICIAL_ACCOUNT | MOMENTS | CUSTOMER_SERVICE
    pub channel: String,
    /// DRAFT | SCHEDULED | RUNNING | PAUSED | COMPLETED | ARCHIVED
    pub status: String,
    pub segment_id: Option<Uuid>,
    /// In fen (0.01 CNY), to keep money exact.
    pub budget_fen: Option<i64>,
    /// At most this many messages per member per window.
    pub frequency_cap_count: i32,
    pub frequency_cap_hours: i32,
    pub start_at: Option<DateTimeUtc>,
    pub end_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
