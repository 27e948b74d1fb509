//! SQLite picks its indexes without statistics, so a query that names the
//! account and a page of members can silently fall back to reading every row
//! of the account (that made 100,000-member persona builds quadratic). These
//! pin the plans of the hot per-member queries.
#![allow(clippy::unwrap_used)]

use entity::{event, message};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DbBackend, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Statement,
};
use uuid::Uuid;

async fn plan(db: &sea_orm::DatabaseConnection, stmt: Statement) -> String {
    let explain = Statement::from_sql_and_values(
        DbBackend::Sqlite,
        format!("EXPLAIN QUERY PLAN {}", stmt.sql),
        stmt.values.map(|v| v.0).unwrap_or_default(),
    );
    db.query_all_raw(explain)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index::<String>(3).unwrap())
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn member_pages_use_the_account_member_indexes() {
    let db = Database::connect("sqlite::memory:").await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    let account = Uuid::now_v7();
    let page: Vec<Uuid> = (0..500).map(|_| Uuid::now_v7()).collect();

    // personas::build and the search documents read messages like this.
    let messages = message::Entity::find()
        .filter(message::Column::AccountId.eq(account))
        .filter(message::Column::MemberId.is_in(page.iter().copied()))
        .order_by_asc(message::Column::At)
        .build(DbBackend::Sqlite);
    let p = plan(&db, messages).await;
    assert!(p.contains("ix_message_account_member"), "{p}");

    let events = event::Entity::find()
        .select_only()
        .column(event::Column::MemberId)
        .column(event::Column::At)
        .filter(event::Column::AccountId.eq(account))
        .filter(event::Column::MemberId.is_in(page.iter().copied()))
        .build(DbBackend::Sqlite);
    let p = plan(&db, events).await;
    assert!(p.contains("ix_event_account_member"), "{p}");
}
