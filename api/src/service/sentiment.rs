//! A brand's own sentiment labels. Corrections: a person sets the label of
//! an analysed message; the message shows it from then on, and it becomes
//! one of the account's sentiment examples, which a head retrained for the
//! account learns from. Also: counts, the review queue, and what an
//! erasure does to heads that learned from the erased member.
use chrono::Utc;
use entity::{message, sentiment_example};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;
use uuid::Uuid;
use worker::{
    jobs::{self, JobKind, enqueue::NewJob},
    sentiment::examples::{self, Counts, ExampleLabel},
};

use super::imports::sentiment_examples::{SOURCE_CORRECTION, example_key, relabel};
use crate::{context::AppState, error::AppResult, tenant};

/// Sets (or with `None` clears) the label of message `id`.
///
/// # Errors
/// `NOT_FOUND` outside this account; database errors.
pub async fn correct(
    db: &sea_orm::DatabaseConnection,
    account_id: Uuid,
    id: Uuid,
    label: Option<ExampleLabel>,
) -> AppResult<message::Model> {
    let txn = worker::config::begin_write(db).await?;
    let m = tenant::get::<message::Entity>(&txn, account_id, id).await?;
    let key = example_key(&m.text);
    match label {
        Some(l) => {
            let now = Utc::now();
            sentiment_example::Entity::insert(sentiment_example::ActiveModel {
                id: Set(Uuid::now_v7()),
                account_id: Set(account_id),
                member_id: Set(Some(m.member_id)),
                message_id: Set(Some(m.id)),
                text: Set(m.text.trim().to_owned()),
                label: Set(l.as_str().to_owned()),
                source: Set(SOURCE_CORRECTION.to_owned()),
                natural_key: Set(key),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .on_conflict(relabel())
            .exec_without_returning(&txn)
            .await?;
        }
        None => {
            sentiment_example::Entity::delete_many()
                .filter(sentiment_example::Column::AccountId.eq(account_id))
                .filter(sentiment_example::Column::NaturalKey.eq(key))
                .exec(&txn)
                .await?;
        }
    }
    let mut row: message::ActiveModel = m.into();
    row.sentiment_corrected = Set(label.map(|l| l.as_str().to_owned()));
    let m = row.update(&txn).await?;
    // the member's persona sentiment counts the correction
    worker::jobs::refresh::touch(&txn, account_id, &[m.member_id]).await?;
    txn.commit().await?;
    Ok(m)
}

/// The account's examples per label.
///
/// # Errors
/// Database errors.
pub async fn example_counts(
    db: &impl sea_orm::ConnectionTrait,
    account_id: Uuid,
) -> AppResult<Counts> {
    use sea_orm::PaginatorTrait;
    let mut c = Counts::default();
    for (l, n) in [
        (ExampleLabel::Positive, &mut c.positive),
        (ExampleLabel::Negative, &mut c.negative),
        (ExampleLabel::Neutral, &mut c.neutral),
    ] {
        *n = tenant::scoped::<sentiment_example::Entity>(account_id)
            .filter(sentiment_example::Column::Label.eq(l.as_str()))
            .count(db)
            .await? as usize;
    }
    Ok(c)
}

/// Analysed messages to label, in `order`, one per distinct text, leaving
/// out texts that are already examples (the account keeps one per text).
/// Reads at most [`REVIEW_SCAN`] messages.
///
/// # Errors
/// Database errors.
pub async fn review_queue(
    db: &impl sea_orm::ConnectionTrait,
    account_id: Uuid,
    first: usize,
    order: ReviewOrder,
) -> AppResult<Vec<message::Model>> {
    use sea_orm::{Order, QueryOrder, QuerySelect, sea_query::Expr};
    const PAGE: u64 = 200;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for page in 0..REVIEW_SCAN / PAGE {
        let q = tenant::scoped::<message::Entity>(account_id)
            .filter(message::Column::Sentiment.is_not_null())
            .filter(message::Column::SentimentCorrected.is_null());
        let q = match order {
            ReviewOrder::LeastSure => q
                .order_by(Expr::cust("ABS(sentiment - 0.5)"), Order::Asc)
                .order_by_desc(message::Column::Id),
            // The natural key is a hash: a stable draw that does not
            // favour any score, time or member.
            ReviewOrder::Sample => q.order_by_asc(message::Column::NaturalKey),
        };
        let rows = q.offset(page * PAGE).limit(PAGE).all(db).await?;
        let full = rows.len() as u64 == PAGE;
        let keys: Vec<String> = rows.iter().map(|m| example_key(&m.text)).collect();
        let labelled: std::collections::HashSet<String> =
            tenant::scoped::<sentiment_example::Entity>(account_id)
                .filter(sentiment_example::Column::NaturalKey.is_in(keys.iter().cloned()))
                .all(db)
                .await?
                .into_iter()
                .map(|e| e.natural_key)
                .collect();
        for (m, k) in rows.into_iter().zip(keys) {
            if labelled.contains(&k) || !seen.insert(k) {
                continue;
            }
            out.push(m);
            if out.len() == first {
                return Ok(out);
            }
        }
        if !full {
            break;
        }
    }
    Ok(out)
}

/// How many messages the review queue reads at most.
pub const REVIEW_SCAN: u64 = 4_000;

/// Which unlabelled messages the review queue offers first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReviewOrder {
    /// Score nearest 0.5: the shown labels most often wrong.
    LeastSure,
    /// A stable pseudo-random draw: as good as or better for retraining.
    Sample,
}

/// The jobs an erasure that removed `forgotten` from the registry calls
/// for, staged in its transaction: a re-analysis if the head in use went
/// (stored scores are its), and a retrain on the examples that remain.
pub(crate) async fn stage_after_forgetting(
    txn: &impl sea_orm::ConnectionTrait,
    account_id: Uuid,
    forgotten: &[entity::model_version::Model],
) -> AppResult<Vec<entity::job_run::Model>> {
    if forgotten.is_empty() {
        return Ok(Vec::new());
    }
    let mut follow_up = Vec::new();
    if forgotten.iter().any(|v| v.active) {
        follow_up.push(NewJob::rescore(account_id));
    }
    let c = example_counts(txn, account_id).await?;
    if c.positive >= examples::MIN_PER_CLASS && c.negative >= examples::MIN_PER_CLASS {
        follow_up.push(NewJob::now(
            account_id,
            JobKind::RetrainSentiment,
            json!({ "accountExamples": true }),
        ));
    }
    let mut staged = Vec::new();
    for job in follow_up {
        staged.extend(jobs::enqueue::stage(txn, job).await?);
    }
    Ok(staged)
}

/// After an erasure removed heads from the registry and committed: their
/// files, this process's copy (other processes drop theirs at their next
/// registry check), then the jobs staged with it. Should this process
/// stop first, the hourly sweep removes the files and any worker queues
/// the jobs.
pub(crate) async fn forget_heads(
    state: &AppState,
    forgotten: &[entity::model_version::Model],
    staged: &[entity::job_run::Model],
) -> AppResult<()> {
    for v in forgotten {
        let onnx = std::path::Path::new(&v.path);
        for f in [onnx.to_path_buf(), onnx.with_extension("json")] {
            if let Err(e) = std::fs::remove_file(&f)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(error = %e, version = %v.version, "erased head's file not removed");
            }
        }
    }
    if let Some(models) = &state.models {
        models
            .refresh_heads(&state.db)
            .await
            .map_err(crate::error::AppError::Internal)?;
    }
    // After the refresh: a re-analysis here must not read with the head
    // that went.
    jobs::enqueue::release(&state.db, &state.queue, staged).await;
    Ok(())
}
