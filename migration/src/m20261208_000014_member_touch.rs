//! Members whose messages, events or relations changed and whose persona
//! waits for a refresh: written in the same transaction as the change (an
//! outbox), turned into refresh jobs by `worker::jobs::refresh`. Before,
//! they were kept in the API process's memory, lost when it stopped, and
//! each process queued its own refreshes.
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum MemberTouch {
    Table,
    AccountId,
    MemberId,
    FirstTouchedAt,
    LastTouchedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(MemberTouch::Table)
                .if_not_exists()
                .col(ColumnDef::new(MemberTouch::AccountId).uuid().not_null())
                .col(ColumnDef::new(MemberTouch::MemberId).uuid().not_null())
                .col(
                    ColumnDef::new(MemberTouch::FirstTouchedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(MemberTouch::LastTouchedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(MemberTouch::AccountId)
                        .col(MemberTouch::MemberId),
                )
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(MemberTouch::Table).take())
            .await
    }
}
