//! A member's messages and events by `(account_id, member_id, at)`.
//!
//! The earlier `(member_id, at)` indexes lost to the unique
//! `(account_id, natural_key)` ones in SQLite's planner whenever a query
//! also named the account (every tenant query does): a page of members then
//! scanned all of the account's messages, which made a 100,000-member persona
//! build quadratic. With the account first, the planner takes these.
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Message {
    Table,
}

#[derive(DeriveIden, Clone, Copy)]
enum Event {
    Table,
}

/// (old index, new index, table).
fn renames() -> [(&'static str, &'static str, DynIden); 2] {
    [
        (
            "ix_message_member",
            "ix_message_account_member",
            Message::Table.into_iden(),
        ),
        (
            "ix_event_member",
            "ix_event_account_member",
            Event::Table.into_iden(),
        ),
    ]
}

fn index(name: &str, table: DynIden, cols: &[&str]) -> IndexCreateStatement {
    let mut idx = Index::create();
    idx.name(name).table(table).if_not_exists();
    for c in cols {
        idx.col(Alias::new(*c));
    }
    idx.take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (old, new, table) in renames() {
            m.create_index(index(
                new,
                table.clone(),
                &["account_id", "member_id", "at"],
            ))
            .await?;
            m.drop_index(Index::drop().name(old).table(table).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (old, new, table) in renames() {
            m.create_index(index(old, table.clone(), &["member_id", "at"]))
                .await?;
            m.drop_index(Index::drop().name(new).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
