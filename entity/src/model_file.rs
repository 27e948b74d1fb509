//! The bytes of a trained model version (its ONNX graph and its JSON), so
//! that every process can load it, whichever machine trained it.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "model_file")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub model_version_id: Uuid,
    pub onnx: Vec<u8>,
    /// The head's JSON (features, thresholds, metrics).
    pub meta: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
