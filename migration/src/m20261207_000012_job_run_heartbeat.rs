//! When the process running a job last said it was alive. A RUNNING job
//! whose process stopped saying so, and which the queue no longer holds (a
//! Redis restarted without persistence), is handed to another worker
//! (`worker::jobs::lost`).
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum JobRun {
    Table,
    HeartbeatAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(JobRun::Table)
                .add_column(
                    ColumnDef::new(JobRun::HeartbeatAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(JobRun::Table)
                .drop_column(JobRun::HeartbeatAt)
                .take(),
        )
        .await
    }
}
