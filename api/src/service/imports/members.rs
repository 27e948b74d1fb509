//! `importMembers`: upsert by `(account, openid)`. Only the columns a row
//! actually gives are updated, so a partial file never erases stored data,
//! and a row that gives what is stored already is not written at all.
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use entity::member;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, ModelTrait,
    QueryFilter, QuerySelect, Set, TryInsert, sea_query::OnConflict,
};
use serde_json::json;
use uuid::Uuid;

use super::{Importer, Outcome, Record, RowError};
use crate::{error::AppResult, service::values as v};

pub struct MembersImport {
    pub account_id: Uuid,
}

#[derive(Debug, Clone, Default)]
pub struct MemberRow {
    pub openid: String,
    pub unionid: Option<String>,
    pub nickname: Option<String>,
    pub gender: Option<&'static str>,
    pub age: Option<i32>,
    pub city: Option<String>,
    pub province: Option<String>,
    pub tags: Option<Vec<String>>,
    pub subscribed: Option<bool>,
    pub consent: Option<bool>,
    pub subscribed_at: Option<DateTime<Utc>>,
}

impl MemberRow {
    /// The stored columns this row sets (besides the key).
    fn present(&self) -> Vec<member::Column> {
        use member::Column as C;
        let mut cols = Vec::new();
        let mut add = |set: bool, c| {
            if set {
                cols.push(c);
            }
        };
        add(self.unionid.is_some(), C::Unionid);
        add(self.nickname.is_some(), C::Nickname);
        add(self.gender.is_some(), C::Gender);
        add(self.age.is_some(), C::Age);
        add(self.city.is_some(), C::City);
        add(self.province.is_some(), C::Province);
        add(self.tags.is_some(), C::Tags);
        add(self.subscribed.is_some(), C::Subscribed);
        add(self.consent.is_some(), C::Consent);
        add(self.subscribed_at.is_some(), C::SubscribedAt);
        cols
    }
}

/// Validates an openid (WeChat's are 28 characters, but imports from other
/// systems use their own ids: any printable token up to 128).
pub fn openid(value: &serde_json::Value, field: &str) -> Result<String, String> {
    let s = v::text(value).ok_or_else(|| format!("{field} is required"))?;
    if s.len() > 128 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{field} must be a token of at most 128 characters without spaces"
        ));
    }
    Ok(s)
}

impl Importer for MembersImport {
    fn account_id(&self) -> Uuid {
        self.account_id
    }

    type Table = entity::member::Entity;
    type Row = MemberRow;
    const COLUMNS: &'static [&'static str] = &[
        "openid",
        "unionid",
        "nickname",
        "gender",
        "age",
        "city",
        "province",
        "tags",
        "subscribed",
        "consent",
        "subscribedAt",
    ];
    const REQUIRED: &'static [&'static str] = &["openid"];

    fn parse(&self, r: &Record) -> Result<MemberRow, String> {
        let f = |k: &str, e: String| format!("{k}: {e}");
        Ok(MemberRow {
            openid: openid(r.get("openid"), "openid")?,
            unionid: v::bounded_text(r.get("unionid"), 128).map_err(|e| f("unionid", e))?,
            nickname: v::bounded_text(r.get("nickname"), 64).map_err(|e| f("nickname", e))?,
            gender: v::gender(r.get("gender")).map_err(|e| f("gender", e))?,
            age: v::integer(r.get("age"), 0, 120)
                .map_err(|e| f("age", e))?
                .map(|a| a as i32),
            city: v::bounded_text(r.get("city"), 64).map_err(|e| f("city", e))?,
            province: v::bounded_text(r.get("province"), 64).map_err(|e| f("province", e))?,
            tags: v::tags(r.get("tags")).map_err(|e| f("tags", e))?,
            subscribed: v::boolean(r.get("subscribed")).map_err(|e| f("subscribed", e))?,
            consent: v::boolean(r.get("consent")).map_err(|e| f("consent", e))?,
            subscribed_at: v::datetime(r.get("subscribedAt")).map_err(|e| f("subscribedAt", e))?,
        })
    }

    async fn write(
        &self,
        txn: &DatabaseTransaction,
        rows: Vec<(usize, MemberRow)>,
        outcome: &mut Outcome,
    ) -> AppResult<Vec<RowError>> {
        // Later rows for the same openid win; group by the columns they set
        // so each upsert updates exactly those.
        let mut last: HashMap<String, MemberRow> = HashMap::with_capacity(rows.len());
        let mut order = Vec::with_capacity(rows.len());
        for (_, row) in rows {
            if !last.contains_key(&row.openid) {
                order.push(row.openid.clone());
            }
            last.insert(row.openid.clone(), row);
        }
        // New members get ids in file order, whichever group they land in.
        let mut groups: BTreeMap<Vec<String>, Vec<(Uuid, MemberRow)>> = BTreeMap::new();
        for openid in order {
            let row = last.remove(&openid).unwrap_or_default();
            let key = row.present().iter().map(|c| format!("{c:?}")).collect();
            groups.entry(key).or_default().push((Uuid::now_v7(), row));
        }
        let now = Utc::now();
        // A row that would change nothing stored is not written, and its
        // member is not refreshed: a daily re-sync of the follower list
        // rebuilds no persona.
        let stored = stored_by_openid(
            txn,
            self.account_id,
            groups.values().flatten().map(|(_, r)| r.openid.clone()),
        )
        .await?;
        for rows in groups.into_values() {
            let mut update = rows[0].1.present();
            let rows: Vec<(Uuid, MemberRow)> = rows
                .into_iter()
                .filter(|(id, r)| {
                    stored.get(&r.openid).is_none_or(|m| {
                        let new = active(self.account_id, *id, r, now);
                        update
                            .iter()
                            .any(|&c| new.get(c).into_value() != Some(m.get(c)))
                    })
                })
                .collect();
            if rows.is_empty() {
                continue;
            }
            update.push(member::Column::UpdatedAt);
            upsert(txn, self.account_id, &rows, &update, now).await?;
            // Stored members keep their ids; a new one's is looked up, as
            // another import may have inserted the openid meanwhile.
            let (known, new): (Vec<_>, Vec<_>) = rows
                .iter()
                .partition(|(_, r)| stored.contains_key(&r.openid));
            outcome
                .touched_members
                .extend(known.iter().map(|(_, r)| stored[&r.openid].id));
            let new = new.into_iter().map(|(_, r)| r.openid.clone());
            let ids = ids_by_openid(txn, self.account_id, new).await?;
            outcome.touched_members.extend(ids.into_values());
        }
        Ok(Vec::new())
    }
}

async fn upsert(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    rows: &[(Uuid, MemberRow)],
    update: &[member::Column],
    now: DateTime<Utc>,
) -> AppResult<()> {
    let models = rows.iter().map(|(id, r)| active(account_id, *id, r, now));
    let mut on_conflict = OnConflict::columns([member::Column::AccountId, member::Column::Openid]);
    on_conflict.update_columns(update.iter().copied());
    TryInsert::many(models)
        .on_conflict(on_conflict)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The row as a new member would be stored (the columns it does not give
/// at their defaults).
fn active(account_id: Uuid, id: Uuid, r: &MemberRow, now: DateTime<Utc>) -> member::ActiveModel {
    let subscribed = r.subscribed.unwrap_or(true);
    member::ActiveModel {
        id: Set(id),
        account_id: Set(account_id),
        openid: Set(r.openid.clone()),
        unionid: Set(r.unionid.clone()),
        nickname: Set(r.nickname.clone()),
        gender: Set(r.gender.unwrap_or("unknown").to_owned()),
        age: Set(r.age),
        city: Set(r.city.clone()),
        province: Set(r.province.clone()),
        tags: Set(json!(r.tags.clone().unwrap_or_default())),
        subscribed: Set(subscribed),
        consent: Set(r.consent.unwrap_or(subscribed)),
        subscribed_at: Set(r.subscribed_at),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// The stored members of these openids within one account.
async fn stored_by_openid(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    openids: impl IntoIterator<Item = String>,
) -> AppResult<HashMap<String, member::Model>> {
    let mut wanted: Vec<String> = openids.into_iter().collect();
    wanted.sort();
    wanted.dedup();
    let mut out = HashMap::with_capacity(wanted.len());
    for part in wanted.chunks(900) {
        let found = member::Entity::find()
            .filter(member::Column::AccountId.eq(account_id))
            .filter(member::Column::Openid.is_in(part.iter().cloned()))
            .all(db)
            .await?;
        out.extend(found.into_iter().map(|m| (m.openid.clone(), m)));
    }
    Ok(out)
}

/// Maps openids to member ids within one account.
///
/// # Errors
/// Database errors.
pub async fn ids_by_openid(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    openids: impl IntoIterator<Item = String>,
) -> AppResult<HashMap<String, Uuid>> {
    let mut wanted: Vec<String> = openids.into_iter().collect();
    wanted.sort();
    wanted.dedup();
    let mut out = HashMap::with_capacity(wanted.len());
    for part in wanted.chunks(900) {
        let found: Vec<(Uuid, String)> = member::Entity::find()
            .select_only()
            .column(member::Column::Id)
            .column(member::Column::Openid)
            .filter(member::Column::AccountId.eq(account_id))
            .filter(member::Column::Openid.is_in(part.iter().cloned()))
            .into_tuple()
            .all(db)
            .await?;
        out.extend(found.into_iter().map(|(id, o)| (o, id)));
    }
    Ok(out)
}
