//! A trained or shipped model file and its metrics; one active per kind and account.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "model_version")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Null for platform-wide models (the shipped embedding model).
    pub account_id: Option<Uuid>,
    /// EMBEDDING | SENTIMENT | RANKER | GENERATOR
    pub kind: String,
    pub version: String,
    pub path: String,
    pub sha256: String,
    pub metrics: Json,
    pub active: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
