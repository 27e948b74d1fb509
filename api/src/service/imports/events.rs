//! `importEvents` and `recordEvents`: append-only, deduplicated by a hash of
//! the whole event, so a re-import adds nothing.
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{campaign, content, event, member};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, Set,
    sea_query::Expr,
};
use uuid::Uuid;

use super::{Importer, Outcome, Record, RowError, insert_new, members::ids_by_openid, natural_key};
use crate::{error::AppResult, service::values as v};

pub struct EventsImport {
    pub account_id: Uuid,
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub openid: String,
    pub kind: String,
    pub at: DateTime<Utc>,
    pub content_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    pub value: Option<f64>,
}

/// Event types are open-ended (`view`, `click`, `share`, `purchase`,
/// `subscribe`, `unsubscribe`, …) but must be a short lowercase token.
pub fn event_kind(value: &serde_json::Value) -> Result<String, String> {
    let s = v::text(value).ok_or("type is required")?.to_lowercase();
    let ok = s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(format!(
            "type {s:?} must be a lowercase word such as view, click or purchase"
        ));
    }
    Ok(s)
}

impl Importer for EventsImport {
    fn account_id(&self) -> Uuid {
        self.account_id
    }

    type Table = entity::event::Entity;
    type Row = EventRow;
    const COLUMNS: &'static [&'static str] =
        &["openid", "type", "at", "contentId", "campaignId", "value"];
    const REQUIRED: &'static [&'static str] = &["openid", "type", "at"];

    fn parse(&self, r: &Record) -> Result<EventRow, String> {
        let f = |k: &str, e: String| format!("{k}: {e}");
        Ok(EventRow {
            openid: super::members::openid(r.get("openid"), "openid")?,
            kind: event_kind(r.get("type"))?,
            at: v::datetime(r.get("at"))
                .map_err(|e| f("at", e))?
                .ok_or("at is required")?,
            content_id: v::uuid(r.get("contentId")).map_err(|e| f("contentId", e))?,
            campaign_id: v::uuid(r.get("campaignId")).map_err(|e| f("campaignId", e))?,
            value: v::float(r.get("value")).map_err(|e| f("value", e))?,
        })
    }

    async fn write(
        &self,
        txn: &DatabaseTransaction,
        rows: Vec<(usize, EventRow)>,
        outcome: &mut Outcome,
    ) -> AppResult<Vec<RowError>> {
        insert_events(txn, self.account_id, rows, outcome).await
    }
}

/// Ids among `ids` that exist in this account's `content` or `campaign` table.
async fn existing<E: crate::tenant::Owned>(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    id_col: E::Column,
    ids: HashSet<Uuid>,
) -> AppResult<HashSet<Uuid>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let found: Vec<Uuid> = crate::tenant::scoped::<E>(account_id)
        .select_only()
        .column(id_col)
        .filter(id_col.is_in(ids))
        .into_tuple()
        .all(db)
        .await?;
    Ok(found.into_iter().collect())
}

/// Validates references and inserts; shared by the import and `recordEvents`.
///
/// # Errors
/// Database errors. Unknown members, contents or campaigns are row errors.
pub async fn insert_events(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    rows: Vec<(usize, EventRow)>,
    outcome: &mut Outcome,
) -> AppResult<Vec<RowError>> {
    let members = ids_by_openid(db, account_id, rows.iter().map(|(_, r)| r.openid.clone())).await?;
    let contents = existing::<content::Entity>(
        db,
        account_id,
        content::Column::Id,
        rows.iter().filter_map(|(_, r)| r.content_id).collect(),
    )
    .await?;
    let campaigns = existing::<campaign::Entity>(
        db,
        account_id,
        campaign::Column::Id,
        rows.iter().filter_map(|(_, r)| r.campaign_id).collect(),
    )
    .await?;
    let now = Utc::now();
    let mut errors = Vec::new();
    let mut models = Vec::with_capacity(rows.len());
    let mut seen = HashSet::new();
    // Latest subscribe/unsubscribe per member, applied to the member row.
    let mut subscription: HashMap<Uuid, (DateTime<Utc>, bool)> = HashMap::new();
    for (line, r) in rows {
        let Some(&member_id) = members.get(&r.openid) else {
            errors.push(RowError {
                line,
                message: format!(
                    "openid {:?} is not a member of this account; import members first / 未知会员",
                    r.openid
                ),
            });
            continue;
        };
        if let Some(c) = r.content_id.filter(|c| !contents.contains(c)) {
            errors.push(RowError {
                line,
                message: format!("contentId {c} not found"),
            });
            continue;
        }
        if let Some(c) = r.campaign_id.filter(|c| !campaigns.contains(c)) {
            errors.push(RowError {
                line,
                message: format!("campaignId {c} not found"),
            });
            continue;
        }
        let key = natural_key(&[
            &r.openid,
            &r.kind,
            &r.at.timestamp_micros().to_string(),
            &r.content_id.map(|c| c.to_string()).unwrap_or_default(),
            &r.campaign_id.map(|c| c.to_string()).unwrap_or_default(),
            &r.value.map(|x| x.to_string()).unwrap_or_default(),
        ]);
        if !seen.insert(key.clone()) {
            continue; // the same event twice in one chunk
        }
        if r.kind == "subscribe" || r.kind == "unsubscribe" {
            let e = subscription
                .entry(member_id)
                .or_insert((r.at, r.kind == "subscribe"));
            if r.at >= e.0 {
                *e = (r.at, r.kind == "subscribe");
            }
        }
        models.push(event::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(account_id),
            member_id: Set(member_id),
            kind: Set(r.kind),
            at: Set(r.at),
            content_id: Set(r.content_id),
            campaign_id: Set(r.campaign_id),
            value: Set(r.value),
            natural_key: Set(key),
            created_at: Set(now),
        });
    }
    let key = [event::Column::AccountId, event::Column::NaturalKey];
    let inserted = insert_new(db, models, &key, event::Column::MemberId).await?;
    outcome.touched_members.extend(inserted);
    for (member_id, (at, subscribed)) in subscription {
        let mut q = member::Entity::update_many()
            .col_expr(member::Column::Subscribed, Expr::value(subscribed))
            .col_expr(member::Column::UpdatedAt, Expr::value(now))
            .filter(member::Column::Id.eq(member_id))
            .filter(member::Column::AccountId.eq(account_id));
        if subscribed {
            q = q.col_expr(member::Column::SubscribedAt, Expr::value(at));
        }
        q.exec(db).await?;
    }
    Ok(errors)
}
