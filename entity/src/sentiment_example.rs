//! A text with the sentiment label a person gave it: a corrected message
//! or an imported labelled text. Heads retrained for the account learn
//! from these.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "sentiment_example")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    /// The member who wrote it (corrections): erased with the member.
    pub member_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub text: String,
    /// POSITIVE | NEGATIVE | NEUTRAL
    pub label: String,
    /// CORRECTION | IMPORT
    pub source: String,
    /// Hash of the text: one label per text and account.
    pub natural_key: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
