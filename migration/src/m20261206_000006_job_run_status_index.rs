//! Jobs by status and due time, whatever the account: the job backlog in
//! `/metrics` reads the QUEUED and RUNNING rows only.
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum JobRun {
    Table,
    Status,
    RunAt,
}

const NAME: &str = "ix_job_run_status_run_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name(NAME)
                .table(JobRun::Table)
                .col(JobRun::Status)
                .col(JobRun::RunAt)
                .if_not_exists()
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name(NAME).table(JobRun::Table).to_owned())
            .await
    }
}
