//! Text analysis: sentiment, embedding and keywords per message.
use std::sync::{Arc, OnceLock};

use chrono::Utc;
use entity::message;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Select, sea_query::Expr,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    jobs::{JobError, execute::Progress},
    sentiment::{Head, Thresholds},
    text, vectors,
};

/// The models text analysis needs. `ml::Models` implements it; the seam
/// keeps jobs testable and lets the runtime evolve on its own.
pub trait TextModels: Send + Sync {
    /// e.g. `multilingual-e5-small-int8@1`.
    fn embedding_model(&self) -> String;
    /// Unit vectors for texts people wrote.
    fn embed_passages(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>>;
    /// Unit vectors for search phrases and category descriptions.
    fn embed_queries(&self, texts: &[String]) -> anyhow::Result<Vec<Vec<f32>>>;
    /// Each text's `query: ` embedding (as [`TextModels::embed_queries`])
    /// and its probability of being positive, in one encoder pass where
    /// the sentiment head reads the adapter's output of the same graph.
    fn embed_and_score(&self, texts: &[String]) -> anyhow::Result<Scored>;
    /// What the active head reads: the encoder output's model id and the
    /// prefix (e.g. `multilingual-e5-small-int8@1+lora-809aa222#query`).
    /// Vectors stored under this key can be scored by
    /// [`TextModels::score_head_inputs`] without the encoder.
    fn head_input_key(&self) -> String;
    /// The active head alone over vectors it reads (stored under
    /// [`TextModels::head_input_key`]): the same probabilities as
    /// [`TextModels::embed_and_score`] up to the vectors' storage precision.
    fn score_head_inputs(&self, texts: &[String], inputs: &[Vec<f32>]) -> anyhow::Result<Vec<f32>>;
    /// The active sentiment head's version.
    fn sentiment_model(&self) -> String;
    /// The active head's NEUTRAL band.
    fn thresholds(&self) -> Thresholds {
        shipped_thresholds()
    }
    /// POSITIVE / NEUTRAL / NEGATIVE for `text`'s probability of
    /// positive (the band depends on the text's length).
    fn label(&self, p: f32, text: &str) -> &'static str {
        self.thresholds().label_text(p, text)
    }
}

pub type DynModels = Arc<dyn TextModels>;

/// [`TextModels::embed_and_score`]'s answer.
#[derive(Debug, Clone)]
pub struct Scored {
    pub embeddings: Vec<Vec<f32>>,
    pub probs: Vec<f32>,
    /// The vectors the head read ([`TextModels::head_input_key`]).
    pub head_inputs: Vec<Vec<f32>>,
}

/// The band for labels where no head is at hand (without language models,
/// tests): the shipped head's, read from its JSON once. Analysed texts and
/// persona labels use the band of the head that reads the account's texts
/// ([`TextModels::thresholds`]), chosen anew with each retrain.
pub fn shipped_thresholds() -> Thresholds {
    static T: OnceLock<Thresholds> = OnceLock::new();
    *T.get_or_init(|| Head::shipped_meta().thresholds)
}

/// POSITIVE / NEUTRAL / NEGATIVE in [`shipped_thresholds`]' band for
/// scores that are no single text's (a persona's average).
pub fn label(p: f32) -> &'static str {
    shipped_thresholds().label(p)
}

/// One analysed text.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub sentiment: f32,
    pub label: &'static str,
    pub keywords: Vec<String>,
    pub embedding: Vec<f32>,
    /// What the head read, to store for re-scoring.
    pub head_input: Vec<f32>,
}

/// Analyses texts in one go (the synchronous `analyzeText` query uses it).
///
/// # Errors
/// Model errors.
pub fn analyze(models: &dyn TextModels, texts: &[String]) -> anyhow::Result<Vec<Analysis>> {
    // e5's "query: " side: messages are compared symmetrically (personas,
    // lookalikes) and classified (sentiment), both of which e5 trains on queries.
    let Scored {
        embeddings,
        probs,
        head_inputs,
    } = models.embed_and_score(texts)?;
    anyhow::ensure!(
        embeddings.len() == texts.len()
            && probs.len() == texts.len()
            && head_inputs.len() == texts.len(),
        "the models answered for another number of texts"
    );
    Ok(texts
        .iter()
        .zip(embeddings)
        .zip(probs)
        .zip(head_inputs)
        .map(|(((t, e), p), h)| Analysis {
            sentiment: p,
            label: models.label(p, t),
            keywords: text::keywords(t, 5),
            embedding: e,
            head_input: h,
        })
        .collect())
}

const BATCH: u64 = 128;
/// Members whose messages one series of pages reads.
const MEMBER_CHUNK: usize = 100;

/// Which messages a run analyses besides those not analysed yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Again {
    /// None.
    No,
    /// Those scored by another sentiment head than the one in use.
    Stale,
    /// All of them.
    All,
}

/// Messages whose score is not `head`'s: scored by another head, or by a
/// release that did not record which (those count as stale once).
pub fn scored_by_another(head: &str) -> Condition {
    scored_by_another_ranges(head)
        .into_iter()
        .fold(Condition::any(), Condition::add)
}

/// [`scored_by_another`] as three conditions that each read one range of
/// `ix_message_sentiment_model`: `<>` reads none, and SQLite does not
/// split the OR into ranges. For probes that stop at the first hit.
pub fn scored_by_another_ranges(head: &str) -> [Condition; 3] {
    [
        Condition::all().add(message::Column::SentimentModel.is_null()),
        Condition::all().add(message::Column::SentimentModel.lt(head)),
        Condition::all().add(message::Column::SentimentModel.gt(head)),
    ]
}

/// `q` narrowed to the messages a run with `again` analyses under `head`.
fn pending(q: Select<message::Entity>, again: Again, head: &str) -> Select<message::Entity> {
    match again {
        Again::All => q,
        Again::No => q.filter(message::Column::AnalyzedAt.is_null()),
        Again::Stale => q.filter(
            Condition::any()
                .add(message::Column::AnalyzedAt.is_null())
                .add(scored_by_another(head)),
        ),
    }
}

/// One page of the messages to analyse: the account's (`scope` `None`)
/// or some of its members', after `after` by id.
fn page(
    backend: DbBackend,
    account_id: Uuid,
    scope: Option<&[Uuid]>,
    after: Option<Uuid>,
    again: Again,
    head: &str,
) -> Select<message::Entity> {
    let q = message::Entity::find();
    let mut q = match scope {
        Some(ids) => q
            .filter(message::Column::AccountId.eq(account_id))
            .filter(message::Column::MemberId.is_in(ids.iter().copied())),
        // Without statistics (a fresh database) SQLite serves
        // `account_id = ?` from an account index and sorts all the
        // account's messages by id for every page: quadratic in the
        // account's size. The unary plus leaves it the primary key's
        // range, which the keyset walks once.
        None if backend == DbBackend::Sqlite => q.filter(Expr::cust_with_values(
            "+\"message\".\"account_id\" = ?",
            [account_id],
        )),
        None => q.filter(message::Column::AccountId.eq(account_id)),
    };
    if let Some(a) = after {
        q = q.filter(message::Column::Id.gt(a));
    }
    pending(q, again, head)
        .order_by_asc(message::Column::Id)
        .limit(BATCH)
}

/// Analyses one page of messages and writes the results in one
/// transaction; records the members whose messages it scored in
/// `members`. Returns how many it scored with the head alone.
async fn analyse_batch(
    db: &DatabaseConnection,
    models: &DynModels,
    batch: &[message::Model],
    again: Again,
    head: &str,
    key: &str,
    members: &mut Vec<Uuid>,
) -> Result<u64, JobError> {
    // After a change of head, messages whose stored head input the new
    // head reads are scored by the head alone: the encoder pass is nearly
    // all of an analysis' cost, and embedding and keywords do not depend
    // on the head.
    let (reuse, full): (Vec<&message::Model>, Vec<&message::Model>) = batch.iter().partition(|m| {
        again == Again::Stale
            && m.analyzed_at.is_some()
            && m.head_input.is_some()
            && m.head_input_model.as_deref() == Some(key)
    });
    let (reuse, scores, full) = match rescore(models, &reuse).await? {
        Some(p) => (reuse, p, full),
        None => (Vec::new(), Vec::new(), batch.iter().collect()),
    };
    let texts: Vec<String> = full.iter().map(|m| m.text.clone()).collect();
    let m = Arc::clone(models);
    let analysed = if texts.is_empty() {
        Vec::new()
    } else {
        tokio::task::spawn_blocking(move || analyze(m.as_ref(), &texts))
            .await
            .map_err(|e| JobError::Transient(e.into()))?
            .map_err(JobError::Transient)?
    };
    let now = Utc::now();
    // The columns every scored message gets.
    let scored = |msg: &message::Model, p: f32, label: &str| {
        message::Entity::update_many()
            .col_expr(message::Column::Sentiment, Expr::value(f64::from(p)))
            .col_expr(message::Column::SentimentLabel, Expr::value(label))
            .col_expr(message::Column::SentimentModel, Expr::value(head))
            .col_expr(message::Column::AnalyzedAt, Expr::value(now))
            .filter(message::Column::Id.eq(msg.id))
    };
    // One transaction per batch: one commit (one fsync on SQLite) instead of one per message.
    let tx = crate::config::begin_write(db).await?;
    for (msg, p) in reuse.iter().zip(&scores) {
        scored(msg, *p, models.label(*p, &msg.text))
            .exec(&tx)
            .await?;
        members.push(msg.member_id);
    }
    for (msg, a) in full.iter().zip(analysed) {
        scored(msg, a.sentiment, a.label)
            .col_expr(
                message::Column::Embedding,
                Expr::value(vectors::to_bytes(&a.embedding)),
            )
            .col_expr(
                message::Column::HeadInput,
                Expr::value(vectors::to_f16_bytes(&a.head_input)),
            )
            .col_expr(message::Column::HeadInputModel, Expr::value(key))
            .col_expr(message::Column::Keywords, Expr::value(json!(a.keywords)))
            .exec(&tx)
            .await?;
        members.push(msg.member_id);
    }
    tx.commit().await?;
    Ok(scores.len() as u64)
}

/// Scores `messages` from their stored head inputs with the head alone;
/// `None` when there are none, or when the head cannot read them (a
/// damaged vector: those messages then take the encoder pass).
async fn rescore(
    models: &DynModels,
    messages: &[&message::Model],
) -> Result<Option<Vec<f32>>, JobError> {
    if messages.is_empty() {
        return Ok(None);
    }
    let texts: Vec<String> = messages.iter().map(|m| m.text.clone()).collect();
    let inputs: Vec<Vec<f32>> = messages
        .iter()
        .map(|m| vectors::from_f16_bytes(m.head_input.as_deref().unwrap_or_default()))
        .collect();
    let m = Arc::clone(models);
    let scored = tokio::task::spawn_blocking(move || m.score_head_inputs(&texts, &inputs))
        .await
        .map_err(|e| JobError::Transient(e.into()))?;
    match scored {
        Ok(p) if p.len() == messages.len() => Ok(Some(p)),
        Ok(_) => Ok(None),
        Err(e) => {
            tracing::warn!(error = %e, "stored head inputs not read; analysing those messages anew");
            Ok(None)
        }
    }
}

/// Analyses the account's messages that are not analysed yet (and those
/// `again` names), optionally only some members'. Returns the ids of
/// members whose messages changed.
///
/// # Errors
/// `Permanent` without models; `Cancelled`; database errors are transient.
pub async fn run(
    db: &DatabaseConnection,
    models: Option<DynModels>,
    account_id: Uuid,
    member_ids: Option<&[Uuid]>,
    again: Again,
    progress: &Progress,
) -> Result<(Value, Vec<Uuid>), JobError> {
    let models = models.ok_or_else(|| {
        JobError::Permanent(
            "the language models are not installed: run `make setup` / 模型未安装".into(),
        )
    })?;
    let started = std::time::Instant::now();
    let head = models.sentiment_model();
    let mut all = message::Entity::find().filter(message::Column::AccountId.eq(account_id));
    if let Some(ids) = member_ids {
        all = all.filter(message::Column::MemberId.is_in(ids.iter().copied()));
    }
    let total = pending(all, again, &head).count(db).await?.max(1);
    let backend = db.get_database_backend();
    // Members a few at a time: a page of many members' messages is read
    // from their index and sorted, so its cost grows with all of theirs.
    let scopes: Vec<Option<&[Uuid]>> = match member_ids {
        Some(ids) => ids.chunks(MEMBER_CHUNK).map(Some).collect(),
        None => vec![None],
    };
    let key = models.head_input_key();
    let mut done = 0u64;
    let mut rescored = 0u64;
    let mut members: Vec<Uuid> = Vec::new();
    for scope in scopes {
        let mut after: Option<Uuid> = None;
        loop {
            let batch = page(backend, account_id, scope, after, again, &head)
                .all(db)
                .await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.id);
            rescored +=
                analyse_batch(db, &models, &batch, again, &head, &key, &mut members).await?;
            done += batch.len() as u64;
            progress.set(done as f64 / total as f64).await?;
        }
    }
    members.sort();
    members.dedup();
    Ok((
        json!({ "messages": done, "rescored": rescored, "members": members.len(), "elapsedMs": started.elapsed().as_millis() as u64,
                "embeddingModel": models.embedding_model(), "sentimentModel": models.sentiment_model() }),
        members,
    ))
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, QueryTrait, Statement};

    use super::*;

    /// SQLite's plan for `q` (the `detail` lines of EXPLAIN QUERY PLAN).
    async fn plan(db: &DatabaseConnection, q: Select<message::Entity>) -> String {
        let stmt = q.build(DbBackend::Sqlite);
        let explain = Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!("EXPLAIN QUERY PLAN {}", stmt.sql),
            stmt.values.map(|v| v.0).unwrap_or_default(),
        );
        let rows = db.query_all_raw(explain).await.unwrap();
        rows.iter()
            .map(|r| r.try_get_by_index::<String>(3).unwrap())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// On a database never analysed (no statistics, as when a brand starts),
    /// a page of the account walks the primary key from where the last one
    /// ended, and a page of some members reads their index: neither sorts
    /// all the account's messages for every page.
    #[tokio::test]
    async fn pages_read_one_index_range_on_a_fresh_sqlite_database() {
        let dir = tempfile::tempdir().unwrap();
        let (db, _queue, account) = crate::jobs::testing::open(dir.path()).await;
        let head = "sentiment-20261207-000000";
        let members = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
        for again in [Again::No, Again::Stale, Again::All] {
            let after = Some(Uuid::now_v7());
            let p = plan(
                &db,
                page(DbBackend::Sqlite, account, None, after, again, head),
            )
            .await;
            assert!(
                p.contains("sqlite_autoindex_message_1 (id>?)"),
                "{again:?}: {p}"
            );
            assert!(!p.contains("TEMP B-TREE"), "{again:?}: {p}");
            let p = plan(
                &db,
                page(
                    DbBackend::Sqlite,
                    account,
                    Some(&members),
                    after,
                    again,
                    head,
                ),
            )
            .await;
            assert!(p.contains("ix_message_account_member"), "{again:?}: {p}");
        }
    }
}
