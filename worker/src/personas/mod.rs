//! Personas: what the platform knows about one member, derived from their
//! messages (analysed), events and friend edges. Rebuilding is an upsert by
//! member, so running a build twice leaves the same state.
pub mod graph;
pub mod social;

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use entity::{event, message, persona};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TryInsert, sea_query::OnConflict,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    jobs::{JobError, execute::Progress},
    taxonomy, text, vectors,
};

/// Half-life of a message's weight in sentiment, interests and the persona embedding.
const HALF_LIFE_DAYS: f64 = 30.0;
const PAGE: u64 = 500;
/// Category similarity needed to count as an interest.
const MIN_INTEREST: f64 = 0.15;

/// Category embeddings for interest assignment, computed by the caller
/// (the models own them) or absent when no embedding model is installed.
pub struct CategoryVectors {
    /// The embedding model's name, recorded on the persona.
    pub model: String,
    pub names: Vec<&'static str>,
    pub vectors: Vec<Vec<f32>>,
}

fn weight(now: DateTime<Utc>, at: DateTime<Utc>) -> f64 {
    let age_days = (now - at).num_seconds().max(0) as f64 / 86_400.0;
    0.5f64.powf(age_days / HALF_LIFE_DAYS)
}

/// Rebuilds the personas of `member_ids` (or every member) of one account.
///
/// # Errors
/// `Cancelled` when the job was cancelled; database errors are transient.
pub async fn build(
    db: &DatabaseConnection,
    account_id: Uuid,
    member_ids: Option<&[Uuid]>,
    categories: Option<&CategoryVectors>,
    progress: &Progress,
) -> Result<Value, JobError> {
    let started = std::time::Instant::now();
    let now = Utc::now();
    // A full build needs the whole friend graph (PageRank); a refresh only
    // the targets' two-hop neighbourhood.
    let social = match member_ids {
        None => social::full(db, account_id).await?,
        Some(ids) => social::local(db, account_id, ids).await?,
    };
    let (openids, g, influence) = (&social.openids, &social.graph, &social.influence);

    let mut targets: Vec<Uuid> = match member_ids {
        Some(ids) => ids
            .iter()
            .copied()
            .filter(|id| openids.contains_key(id))
            .collect(),
        None => openids.keys().copied().collect(),
    };
    targets.sort();
    let total = targets.len().max(1);
    let mut built = 0usize;
    let mut with_sentiment = 0usize;
    for page in targets.chunks(PAGE as usize) {
        let messages = message::Entity::find()
            .filter(message::Column::AccountId.eq(account_id))
            .filter(message::Column::MemberId.is_in(page.iter().copied()))
            .order_by_asc(message::Column::At)
            .all(db)
            .await?;
        let events: Vec<(Uuid, DateTime<Utc>)> = event::Entity::find()
            .select_only()
            .column(event::Column::MemberId)
            .column(event::Column::At)
            .filter(event::Column::AccountId.eq(account_id))
            .filter(event::Column::MemberId.is_in(page.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        let mut msgs_by: HashMap<Uuid, Vec<&message::Model>> = HashMap::new();
        for m in &messages {
            msgs_by.entry(m.member_id).or_default().push(m);
        }
        let mut events_by: HashMap<Uuid, Vec<DateTime<Utc>>> = HashMap::new();
        for (m, at) in events {
            events_by.entry(m).or_default().push(at);
        }
        let mut rows = Vec::with_capacity(page.len());
        for id in page {
            let openid = &openids[id];
            let msgs = msgs_by.remove(id).unwrap_or_default();
            let evs = events_by.remove(id).unwrap_or_default();
            let p = persona_of(now, &msgs, &evs, categories);
            if p.sentiment.is_some() {
                with_sentiment += 1;
            }
            rows.push(persona::ActiveModel {
                member_id: Set(*id),
                account_id: Set(account_id),
                interests: Set(p.interests),
                keywords: Set(json!(p.keywords)),
                embedding: Set(p.embedding.as_deref().map(vectors::to_bytes)),
                embedding_model: Set(p.embedding_model),
                sentiment: Set(p.sentiment),
                sentiment_trend: Set(p.trend),
                activity: Set(p.activity),
                degree: Set(g.degree(openid) as i32),
                two_hop_reach: Set(g.two_hop(openid) as i32),
                influence: Set(influence.get(openid).copied().unwrap_or(0.0)),
                last_active_at: Set(p.last_active_at),
                updated_at: Set(now),
            });
        }
        let mut oc = OnConflict::column(persona::Column::MemberId);
        oc.update_columns([
            persona::Column::Interests,
            persona::Column::Keywords,
            persona::Column::Embedding,
            persona::Column::EmbeddingModel,
            persona::Column::Sentiment,
            persona::Column::SentimentTrend,
            persona::Column::Activity,
            persona::Column::Degree,
            persona::Column::TwoHopReach,
            persona::Column::Influence,
            persona::Column::LastActiveAt,
            persona::Column::UpdatedAt,
        ]);
        if !rows.is_empty() {
            TryInsert::many(rows)
                .on_conflict(oc)
                .exec_without_returning(db)
                .await?;
        }
        built += page.len();
        progress.set(built as f64 / total as f64).await?;
    }
    Ok(json!({
        "members": built,
        "withSentiment": with_sentiment,
        "elapsedMs": started.elapsed().as_millis() as u64,
    }))
}

struct Derived {
    interests: Value,
    keywords: Vec<String>,
    embedding: Option<Vec<f32>>,
    embedding_model: Option<String>,
    sentiment: Option<f64>,
    trend: Option<f64>,
    activity: f64,
    last_active_at: Option<DateTime<Utc>>,
}

fn persona_of(
    now: DateTime<Utc>,
    msgs: &[&message::Model],
    events: &[DateTime<Utc>],
    categories: Option<&CategoryVectors>,
) -> Derived {
    // Sentiment: recency-weighted mean of probability-of-positive (a
    // person's correction counts as certain); trend is the last two weeks
    // against what came before.
    let scored: Vec<(DateTime<Utc>, f64)> = msgs
        .iter()
        .filter_map(|m| {
            let corrected = match m.sentiment_corrected.as_deref() {
                Some("POSITIVE") => Some(1.0),
                Some("NEGATIVE") => Some(0.0),
                Some("NEUTRAL") => Some(0.5),
                _ => None,
            };
            corrected.or(m.sentiment).map(|s| (m.at, s))
        })
        .collect();
    let (mut sw, mut s) = (0.0, 0.0);
    for (at, v) in &scored {
        let w = weight(now, *at);
        sw += w;
        s += w * v;
    }
    let sentiment = (sw > 0.0).then(|| s / sw);
    let cut = now - Duration::days(14);
    let mean = |xs: Vec<f64>| (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64);
    let recent = mean(
        scored
            .iter()
            .filter(|(at, _)| *at >= cut)
            .map(|(_, v)| *v)
            .collect(),
    );
    let before = mean(
        scored
            .iter()
            .filter(|(at, _)| *at < cut)
            .map(|(_, v)| *v)
            .collect(),
    );
    let trend = recent.zip(before).map(|(r, b)| r - b);

    // Persona embedding: recency-weighted mean of message embeddings.
    let mut embedding: Option<Vec<f32>> = None;
    for m in msgs {
        if let Some(b) = &m.embedding {
            let v = vectors::from_bytes(b);
            let w = weight(now, m.at) as f32;
            let acc = embedding.get_or_insert_with(|| vec![0.0; v.len()]);
            if acc.len() == v.len() {
                acc.iter_mut().zip(&v).for_each(|(a, x)| *a += w * x);
            }
        }
    }
    if let Some(e) = embedding.as_mut() {
        vectors::normalize(e);
    }

    // Interests: per message, the categories it is closest to (embedding
    // similarity when analysed, the lexicon otherwise), recency weighted.
    let mut scores: HashMap<&'static str, f64> = HashMap::new();
    for m in msgs {
        let w = weight(now, m.at);
        match (categories, &m.embedding) {
            (Some(c), Some(b)) => {
                let v = vectors::from_bytes(b);
                let sims: Vec<f64> = c
                    .vectors
                    .iter()
                    .map(|cv| f64::from(vectors::dot(&v, cv)))
                    .collect();
                // Softmax with a low temperature: one message mostly speaks to one or two categories.
                let max = sims.iter().copied().fold(f64::MIN, f64::max);
                let exps: Vec<f64> = sims.iter().map(|x| ((x - max) / 0.02).exp()).collect();
                let z: f64 = exps.iter().sum();
                for (name, e) in c.names.iter().zip(exps) {
                    *scores.entry(name).or_default() += w * e / z;
                }
            }
            _ => {
                for cat in taxonomy::DEFAULT {
                    let hits = cat.lexicon.iter().filter(|k| m.text.contains(*k)).count();
                    if hits > 0 {
                        *scores.entry(cat.name).or_default() += w * (hits as f64).min(3.0) / 3.0;
                    }
                }
            }
        }
    }
    let top = scores.values().copied().fold(0.0, f64::max);
    let mut interests: Vec<(&str, f64)> = scores
        .into_iter()
        .map(|(k, v)| (k, if top > 0.0 { v / top } else { 0.0 }))
        .filter(|(_, v)| *v >= MIN_INTEREST)
        .collect();
    interests.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    interests.truncate(5);

    // Keywords over the most recent texts.
    let recent_text: String = msgs
        .iter()
        .rev()
        .take(20)
        .map(|m| m.text.as_str())
        .collect::<Vec<_>>()
        .join("。");
    let keywords = if recent_text.is_empty() {
        Vec::new()
    } else {
        text::keywords(&recent_text, 8)
    };

    // Activity: how recently and how often, from events and messages.
    let mut times: Vec<DateTime<Utc>> = events.to_vec();
    times.extend(msgs.iter().map(|m| m.at));
    let last_active_at = times.iter().max().copied();
    let recency = last_active_at.map_or(0.0, |t| {
        (-((now - t).num_hours().max(0) as f64) / (24.0 * 14.0)).exp()
    });
    let month = times
        .iter()
        .filter(|t| **t >= now - Duration::days(30))
        .count() as f64;
    let frequency = 1.0 - (-month / 10.0).exp();
    let activity = ((0.5 * recency + 0.5 * frequency) * 1000.0).round() / 1000.0;

    let embedding_model = embedding.as_ref().map(|_| {
        categories.map_or_else(|| "multilingual-e5-small".to_owned(), |c| c.model.clone())
    });
    Derived {
        interests: json!(
            interests
                .iter()
                .map(|(n, w)| json!({ "name": n, "weight": (w * 1000.0).round() / 1000.0 }))
                .collect::<Vec<_>>()
        ),
        keywords,
        embedding,
        embedding_model,
        sentiment,
        trend,
        activity,
        last_active_at,
    }
}
