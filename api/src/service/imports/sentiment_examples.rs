//! `importSentimentExamples`: texts with the sentiment label the brand
//! gives them (`label,text`; the `label,review` files of the common Chinese
//! review sets load as they are), upserted by text: importing a text again
//! with another label relabels it.
use chrono::Utc;
use entity::sentiment_example;
use sea_orm::{DatabaseTransaction, EntityTrait, Set, sea_query::OnConflict};
use uuid::Uuid;
use worker::sentiment::examples::ExampleLabel;

use super::{Importer, Outcome, Record, RowError, messages::MAX_TEXT_CHARS, natural_key};
use crate::{error::AppResult, service::values as v};

pub struct SentimentExamplesImport {
    pub account_id: Uuid,
}

#[derive(Debug, Clone)]
pub struct ExampleRow {
    pub text: String,
    pub label: ExampleLabel,
}

/// The one key per text and account (white space at the ends ignored).
pub fn example_key(text: &str) -> String {
    natural_key(&["sentiment-example", text.trim()])
}

/// Parses a label as written in imports and corrections.
///
/// # Errors
/// A message naming the accepted values.
pub fn label(value: &serde_json::Value) -> Result<ExampleLabel, String> {
    let s = match value {
        serde_json::Value::Number(n) => n.to_string(),
        other => v::text(other).ok_or("label is required")?,
    };
    ExampleLabel::parse(&s).ok_or_else(|| {
        format!("label {s:?} must be POSITIVE, NEGATIVE or NEUTRAL (or 1 / 0) / 标签须为正面、负面或中性")
    })
}

impl Importer for SentimentExamplesImport {
    fn account_id(&self) -> Uuid {
        self.account_id
    }

    type Table = entity::sentiment_example::Entity;
    type Row = ExampleRow;
    const COLUMNS: &'static [&'static str] = &["label", "text", "review"];
    const REQUIRED: &'static [&'static str] = &["label"];

    fn parse(&self, r: &Record) -> Result<ExampleRow, String> {
        let text = match v::bounded_text(r.get("text"), MAX_TEXT_CHARS)
            .map_err(|e| format!("text: {e}"))?
        {
            Some(t) => Some(t),
            None => v::bounded_text(r.get("review"), MAX_TEXT_CHARS)
                .map_err(|e| format!("review: {e}"))?,
        };
        let text = text
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or("text is required / 缺少文本")?;
        Ok(ExampleRow {
            label: label(r.get("label"))?,
            text,
        })
    }

    async fn write(
        &self,
        txn: &DatabaseTransaction,
        rows: Vec<(usize, ExampleRow)>,
        _outcome: &mut Outcome,
    ) -> AppResult<Vec<RowError>> {
        let now = Utc::now();
        // The last row of a text wins, as a later import would.
        let mut by_key = std::collections::HashMap::new();
        for (_, r) in rows {
            by_key.insert(example_key(&r.text), r);
        }
        let models: Vec<_> = by_key
            .into_iter()
            .map(|(key, r)| sentiment_example::ActiveModel {
                id: Set(Uuid::now_v7()),
                account_id: Set(self.account_id),
                member_id: Set(None),
                message_id: Set(None),
                text: Set(r.text),
                label: Set(r.label.as_str().to_owned()),
                source: Set(SOURCE_IMPORT.to_owned()),
                natural_key: Set(key),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .collect();
        if !models.is_empty() {
            sentiment_example::Entity::insert_many(models)
                .on_conflict(relabel())
                .exec_without_returning(txn)
                .await?;
        }
        Ok(Vec::new())
    }
}

pub const SOURCE_IMPORT: &str = "IMPORT";
pub const SOURCE_CORRECTION: &str = "CORRECTION";

/// On an existing text: take the new label, keep the row (its id, its
/// link to a corrected message).
pub fn relabel() -> OnConflict {
    OnConflict::columns([
        sentiment_example::Column::AccountId,
        sentiment_example::Column::NaturalKey,
    ])
    .update_columns([
        sentiment_example::Column::Label,
        sentiment_example::Column::UpdatedAt,
    ])
    .to_owned()
}
