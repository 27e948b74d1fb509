//! Messages by the head that scored them: the nightly check for stale
//! scores ("any analysed message not scored by the head in use?") and the
//! re-analysis that follows read ranges of this index instead of every
//! message of the account. `analyzed_at` makes the check index-only.
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Message {
    Table,
    AccountId,
    SentimentModel,
    AnalyzedAt,
}

const NAME: &str = "ix_message_sentiment_model";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(NAME)
                .table(Message::Table)
                .col(Message::AccountId)
                .col(Message::SentimentModel)
                .col(Message::AnalyzedAt)
                .if_not_exists()
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name(NAME).table(Message::Table).to_owned())
            .await
    }
}
