//! What the jobs' unit tests share: a migrated SQLite database with its
//! queue and one account.
use chrono::Utc;
use migration::MigratorTrait;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, Set};
use uuid::Uuid;

use super::JobQueue;

pub async fn open(dir: &std::path::Path) -> (DatabaseConnection, JobQueue, Uuid) {
    let mut cfg = crate::Config::from_env().unwrap();
    cfg.data_dir = dir.to_path_buf();
    cfg.database_url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
    cfg.queue_url = None;
    let db = crate::config::connect(&cfg).await.unwrap();
    migration::Migrator::up(&db, None).await.unwrap();
    let queue = JobQueue::connect(&cfg, &db).await.unwrap();
    let account = Uuid::now_v7();
    entity::account::ActiveModel {
        id: Set(account),
        name: Set("店".into()),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&db)
    .await
    .unwrap();
    (db, queue, account)
}

/// The first column of the first row of `sql`, a count.
pub async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            sql.to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index(0).unwrap()
}
