//! The vector a message's sentiment head read (f16) and which encoder
//! output gave it, so that a change of head re-scores stored messages with
//! the head alone instead of running the encoder over them again.
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Message {
    Table,
    HeadInput,
    HeadInputModel,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        m.alter_table(
            Table::alter()
                .table(Message::Table)
                .add_column(ColumnDef::new(Message::HeadInput).blob().null())
                .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Message::Table)
                .add_column(ColumnDef::new(Message::HeadInputModel).string().null())
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [Message::HeadInputModel, Message::HeadInput] {
            m.alter_table(Table::alter().table(Message::Table).drop_column(col).take())
                .await?;
        }
        Ok(())
    }
}
