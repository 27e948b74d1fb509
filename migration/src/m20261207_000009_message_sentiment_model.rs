//! Which sentiment head scored a message, so that after a change of head
//! only the messages it has not scored are analysed again (and a stopped
//! re-analysis resumes where it was).
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Message {
    Table,
    SentimentModel,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Message::Table)
                .add_column(ColumnDef::new(Message::SentimentModel).string().null())
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Message::Table)
                .drop_column(Message::SentimentModel)
                .take(),
        )
        .await
    }
}
