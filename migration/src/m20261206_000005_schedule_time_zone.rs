//! Recurring jobs may follow an IANA time zone (daylight saving included)
//! instead of a fixed UTC offset; null keeps the offset.
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum JobSchedule {
    Table,
    TimeZone,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(JobSchedule::Table)
                .add_column(ColumnDef::new(JobSchedule::TimeZone).string().null())
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(JobSchedule::Table)
                .drop_column(JobSchedule::TimeZone)
                .take(),
        )
        .await
    }
}
