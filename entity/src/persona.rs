//! The derived view of a member, rebuilt by the persona job.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "persona")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub member_id: Uuid,
    pub account_id: Uuid,
    /// `[{"name": "美妆护肤", "weight": 0.8}, ...]`
    pub interests: Json,
    /// `["面霜", ...]`
    pub keywords: Json,
    pub embedding: Option<Vec<u8>>,
    pub embedding_model: Option<String>,
    /// Mean probability of positive, recency weighted; [0, 1].
    pub sentiment: Option<f64>,
    pub sentiment_trend: Option<f64>,
    /// [0, 1]
    pub activity: f64,
    pub degree: i32,
    pub two_hop_reach: i32,
    pub influence: f64,
    pub last_active_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
