//! Text a member wrote: a chat message, a Moments post or a comment.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "message")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    pub member_id: Uuid,
    /// chat | moment | comment
    pub kind: String,
    pub text: String,
    pub at: DateTimeUtc,
    pub content_id: Option<Uuid>,
    /// Hash of the natural key (member, kind, at, text).
    pub natural_key: String,
    /// Probability of positive, filled by text analysis.
    pub sentiment: Option<f64>,
    pub sentiment_label: Option<String>,
    /// The label a person set (POSITIVE | NEUTRAL | NEGATIVE), which the
    /// API shows instead of the model's; mirrored in `sentiment_example`.
    pub sentiment_corrected: Option<String>,
    /// The sentiment head (version) that scored `sentiment`.
    pub sentiment_model: Option<String>,
    /// Little-endian f32 vector, filled by text analysis.
    pub embedding: Option<Vec<u8>>,
    /// The vector the sentiment head read (little-endian f16), kept so a
    /// change of head re-scores the message without the encoder.
    pub head_input: Option<Vec<u8>>,
    /// What gave `head_input`: the encoder output's model id and prefix
    /// (`analysis::TextModels::head_input_key`).
    pub head_input_model: Option<String>,
    pub keywords: Option<Json>,
    pub analyzed_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
