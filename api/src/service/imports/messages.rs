//! `importMessages`: chat messages, Moments posts and comments, deduplicated
//! by a hash of (member, kind, time, text).
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use entity::{content, message};
use sea_orm::{ColumnTrait, DatabaseTransaction, QueryFilter, QuerySelect, Set};
use uuid::Uuid;

use super::{Importer, Outcome, Record, RowError, insert_new, members::ids_by_openid, natural_key};
use crate::{error::AppResult, service::values as v};

pub const MAX_TEXT_CHARS: usize = 5000;

pub struct MessagesImport {
    pub account_id: Uuid,
}

#[derive(Debug, Clone)]
pub struct MessageRow {
    pub openid: String,
    pub kind: &'static str,
    pub text: String,
    pub at: DateTime<Utc>,
    pub content_id: Option<Uuid>,
}

pub fn message_kind(value: &serde_json::Value) -> Result<&'static str, String> {
    match v::text(value).map(|s| s.to_lowercase()).as_deref() {
        None | Some("chat") => Ok("chat"),
        Some("moment" | "moments" | "post") => Ok("moment"),
        Some("comment") => Ok("comment"),
        Some(other) => Err(format!("kind {other:?} must be chat, moment or comment")),
    }
}

impl Importer for MessagesImport {
    fn account_id(&self) -> Uuid {
        self.account_id
    }

    type Table = entity::message::Entity;
    type Row = MessageRow;
    const COLUMNS: &'static [&'static str] = &["openid", "kind", "text", "at", "contentId"];
    const REQUIRED: &'static [&'static str] = &["openid", "text", "at"];

    fn parse(&self, r: &Record) -> Result<MessageRow, String> {
        let f = |k: &str, e: String| format!("{k}: {e}");
        Ok(MessageRow {
            openid: super::members::openid(r.get("openid"), "openid")?,
            kind: message_kind(r.get("kind"))?,
            text: v::bounded_text(r.get("text"), MAX_TEXT_CHARS)
                .map_err(|e| f("text", e))?
                .ok_or("text is required")?,
            at: v::datetime(r.get("at"))
                .map_err(|e| f("at", e))?
                .ok_or("at is required")?,
            content_id: v::uuid(r.get("contentId")).map_err(|e| f("contentId", e))?,
        })
    }

    async fn write(
        &self,
        txn: &DatabaseTransaction,
        rows: Vec<(usize, MessageRow)>,
        outcome: &mut Outcome,
    ) -> AppResult<Vec<RowError>> {
        let members = ids_by_openid(
            txn,
            self.account_id,
            rows.iter().map(|(_, r)| r.openid.clone()),
        )
        .await?;
        let wanted: HashSet<Uuid> = rows.iter().filter_map(|(_, r)| r.content_id).collect();
        let contents: HashSet<Uuid> = if wanted.is_empty() {
            HashSet::new()
        } else {
            crate::tenant::scoped::<content::Entity>(self.account_id)
                .select_only()
                .column(content::Column::Id)
                .filter(content::Column::Id.is_in(wanted))
                .into_tuple::<Uuid>()
                .all(txn)
                .await?
                .into_iter()
                .collect()
        };
        let now = Utc::now();
        let mut errors = Vec::new();
        let mut seen = HashSet::new();
        let mut models = Vec::with_capacity(rows.len());
        for (line, r) in rows {
            let Some(&member_id) = members.get(&r.openid) else {
                errors.push(RowError { line, message: format!("openid {:?} is not a member of this account; import members first / 未知会员", r.openid) });
                continue;
            };
            if let Some(c) = r.content_id.filter(|c| !contents.contains(c)) {
                errors.push(RowError {
                    line,
                    message: format!("contentId {c} not found"),
                });
                continue;
            }
            let key = natural_key(&[
                &r.openid,
                r.kind,
                &r.at.timestamp_micros().to_string(),
                &r.text,
            ]);
            if !seen.insert(key.clone()) {
                continue;
            }
            models.push(message::ActiveModel {
                id: Set(Uuid::now_v7()),
                account_id: Set(self.account_id),
                member_id: Set(member_id),
                kind: Set(r.kind.to_owned()),
                text: Set(r.text),
                at: Set(r.at),
                content_id: Set(r.content_id),
                natural_key: Set(key),
                sentiment: Set(None),
                sentiment_label: Set(None),
                sentiment_corrected: Set(None),
                sentiment_model: Set(None),
                embedding: Set(None),
                head_input: Set(None),
                head_input_model: Set(None),
                keywords: Set(None),
                analyzed_at: Set(None),
                created_at: Set(now),
            });
        }
        let key = [message::Column::AccountId, message::Column::NaturalKey];
        let inserted = insert_new(txn, models, &key, message::Column::MemberId).await?;
        outcome.touched_members.extend(inserted);
        Ok(errors)
    }
}
