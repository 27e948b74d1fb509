//! A brand's own sentiment labels: corrections of analysed messages and
//! imported labelled texts, which a head retrained for the account learns
//! from; a corrected message shows its correction.
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum SentimentExample {
    Table,
    Id,
    AccountId,
    MemberId,
    MessageId,
    Text,
    Label,
    Source,
    NaturalKey,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Message {
    Table,
    SentimentCorrected,
}

const UNIQUE: &str = "ux_sentiment_example_account_key";
const BY_MEMBER: &str = "ix_sentiment_example_member";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let ts = |c: SentimentExample| {
            ColumnDef::new(c)
                .timestamp_with_time_zone()
                .not_null()
                .take()
        };
        m.create_table(
            Table::create()
                .table(SentimentExample::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(SentimentExample::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(SentimentExample::AccountId)
                        .uuid()
                        .not_null(),
                )
                .col(ColumnDef::new(SentimentExample::MemberId).uuid().null())
                .col(ColumnDef::new(SentimentExample::MessageId).uuid().null())
                .col(ColumnDef::new(SentimentExample::Text).text().not_null())
                .col(ColumnDef::new(SentimentExample::Label).string().not_null())
                .col(ColumnDef::new(SentimentExample::Source).string().not_null())
                .col(
                    ColumnDef::new(SentimentExample::NaturalKey)
                        .string()
                        .not_null(),
                )
                .col(ts(SentimentExample::CreatedAt))
                .col(ts(SentimentExample::UpdatedAt))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(UNIQUE)
                .table(SentimentExample::Table)
                .col(SentimentExample::AccountId)
                .col(SentimentExample::NaturalKey)
                .unique()
                .if_not_exists()
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(BY_MEMBER)
                .table(SentimentExample::Table)
                .col(SentimentExample::AccountId)
                .col(SentimentExample::MemberId)
                .if_not_exists()
                .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Message::Table)
                .add_column(ColumnDef::new(Message::SentimentCorrected).string().null())
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Message::Table)
                .drop_column(Message::SentimentCorrected)
                .take(),
        )
        .await?;
        m.drop_table(Table::drop().table(SentimentExample::Table).to_owned())
            .await
    }
}
