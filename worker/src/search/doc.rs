//! The indexed form of a persona: member attributes, persona scores and the
//! search terms of recent texts, read from the database in pages.
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{member, message, persona};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::query::document_terms;
use crate::{sentiment::Thresholds, vectors};

/// How many recent messages contribute search terms.
pub const RECENT_MESSAGES: usize = 20;

/// One persona as a search document. Absent values are left out (never
/// null or an empty list), so `EXISTS` means the same on every backend.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonaDoc {
    /// The member id (hyphenated UUID): the primary key.
    pub id: String,
    pub openid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
    pub gender: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interests: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentiment_label: Option<String>,
    pub activity: f64,
    pub reach: i64,
    pub degree: i64,
    pub influence: f64,
    pub subscribed: bool,
    pub consent: bool,
    /// Seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_active_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscribed_at: Option<i64>,
    /// Lowercased jieba words of interests, keywords and recent messages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<String>,
    /// Unit-length persona embedding; backends store it their own way.
    #[serde(skip)]
    pub embedding: Option<Vec<f32>>,
}

impl PersonaDoc {
    pub fn member_id(&self) -> Uuid {
        Uuid::parse_str(&self.id).unwrap_or_default()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().or_else(|| x.get("name").and_then(Value::as_str)))
                .filter(|s| !s.trim().is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// Builds the document of one member from its rows; `band` labels the
/// persona's sentiment (that of the head the account reads with).
pub fn build(
    m: &member::Model,
    p: Option<&persona::Model>,
    recent: &[&str],
    band: Thresholds,
) -> PersonaDoc {
    let interests = p.map(|p| strings(&p.interests)).unwrap_or_default();
    let keywords = p.map(|p| strings(&p.keywords)).unwrap_or_default();
    let terms = document_terms(
        interests
            .iter()
            .chain(&keywords)
            .map(String::as_str)
            .chain(recent.iter().copied()),
    );
    let embedding = p
        .and_then(|p| p.embedding.as_deref())
        .map(vectors::from_bytes)
        .filter(|v| !v.is_empty())
        .map(|mut v| {
            vectors::normalize(&mut v);
            v
        });
    let sentiment = p.and_then(|p| p.sentiment);
    PersonaDoc {
        id: m.id.to_string(),
        openid: m.openid.clone(),
        city: non_empty(m.city.clone()),
        province: non_empty(m.province.clone()),
        gender: m.gender.clone(),
        age: m.age.map(i64::from),
        tags: strings(&m.tags),
        interests,
        keywords,
        sentiment,
        sentiment_label: sentiment.map(|s| band.label(s as f32).to_owned()),
        activity: p.map_or(0.0, |p| p.activity),
        reach: p.map_or(0, |p| i64::from(p.two_hop_reach)),
        degree: p.map_or(0, |p| i64::from(p.degree)),
        influence: p.map_or(0.0, |p| p.influence),
        subscribed: m.subscribed,
        consent: m.consent,
        last_active_at: p.and_then(|p| p.last_active_at).map(|t| t.timestamp()),
        subscribed_at: m.subscribed_at.map(|t: DateTime<Utc>| t.timestamp()),
        terms,
        embedding,
    }
}

/// The documents of `ids` in one account; members that no longer exist are
/// simply absent from the answer.
///
/// # Errors
/// Database errors.
pub async fn load(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    ids: &[Uuid],
    band: Thresholds,
) -> Result<Vec<PersonaDoc>, sea_orm::DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let members = member::Entity::find()
        .filter(member::Column::AccountId.eq(account_id))
        .filter(member::Column::Id.is_in(ids.iter().copied()))
        .order_by_asc(member::Column::Id)
        .all(db)
        .await?;
    assemble(db, account_id, members, band).await
}

/// One page of an account's documents in member-id order, after `after`.
///
/// # Errors
/// Database errors.
pub async fn page(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    after: Option<Uuid>,
    size: u64,
    band: Thresholds,
) -> Result<Vec<PersonaDoc>, sea_orm::DbErr> {
    let mut q = member::Entity::find().filter(member::Column::AccountId.eq(account_id));
    if let Some(a) = after {
        q = q.filter(member::Column::Id.gt(a));
    }
    let members = q
        .order_by_asc(member::Column::Id)
        .limit(size)
        .all(db)
        .await?;
    assemble(db, account_id, members, band).await
}

async fn assemble(
    db: &impl ConnectionTrait,
    account_id: Uuid,
    members: Vec<member::Model>,
    band: Thresholds,
) -> Result<Vec<PersonaDoc>, sea_orm::DbErr> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = members.iter().map(|m| m.id).collect();
    let personas: HashMap<Uuid, persona::Model> = persona::Entity::find()
        .filter(persona::Column::AccountId.eq(account_id))
        .filter(persona::Column::MemberId.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|p| (p.member_id, p))
        .collect();
    let texts: Vec<(Uuid, String)> = message::Entity::find()
        .select_only()
        .column(message::Column::MemberId)
        .column(message::Column::Text)
        .filter(message::Column::AccountId.eq(account_id))
        .filter(message::Column::MemberId.is_in(ids.iter().copied()))
        .order_by_desc(message::Column::At)
        .into_tuple()
        .all(db)
        .await?;
    let mut recent: HashMap<Uuid, Vec<&str>> = HashMap::new();
    for (m, t) in &texts {
        let v = recent.entry(*m).or_default();
        if v.len() < RECENT_MESSAGES {
            v.push(t.as_str());
        }
    }
    Ok(members
        .iter()
        .map(|m| {
            build(
                m,
                personas.get(&m.id),
                recent.get(&m.id).map(Vec::as_slice).unwrap_or_default(),
                band,
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn the_persona_label_is_in_the_band_given() {
        let now = Utc::now();
        let m = member::Model {
            id: Uuid::now_v7(),
            account_id: Uuid::now_v7(),
            openid: "o_1".into(),
            unionid: None,
            nickname: None,
            gender: "unknown".into(),
            age: None,
            city: None,
            province: None,
            tags: json!([]),
            subscribed: true,
            consent: true,
            subscribed_at: None,
            created_at: now,
            updated_at: now,
        };
        let p = persona::Model {
            member_id: m.id,
            account_id: m.account_id,
            interests: json!([]),
            keywords: json!([]),
            embedding: None,
            embedding_model: None,
            sentiment: Some(0.6),
            sentiment_trend: None,
            activity: 0.0,
            degree: 0,
            two_hop_reach: 0,
            influence: 0.0,
            last_active_at: None,
            updated_at: now,
        };
        let label = |lo, hi| build(&m, Some(&p), &[], Thresholds::single(lo, hi)).sentiment_label;
        assert_eq!(label(0.35, 0.65).as_deref(), Some("NEUTRAL"));
        assert_eq!(label(0.45, 0.55).as_deref(), Some("POSITIVE"));
        assert_eq!(
            build(&m, None, &[], Thresholds::single(0.45, 0.55)).sentiment_label,
            None
        );
    }
}
