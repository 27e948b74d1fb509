//! Jobs written in the same transaction as the change that calls for them
//! (an erasure's retrain, a change of head's re-analysis) and handed to the
//! queue storage after it commits. `staged` marks those not handed over
//! yet, so that one whose process died before handing it over is found and
//! queued by another (`worker::jobs::enqueue::release_stranded`).
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum JobRun {
    Table,
    Staged,
    CreatedAt,
}

const NAME: &str = "ix_job_run_staged";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(JobRun::Table)
                .add_column(
                    ColumnDef::new(JobRun::Staged)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name(NAME)
                .table(JobRun::Table)
                .col(JobRun::Staged)
                .col(JobRun::CreatedAt)
                .if_not_exists()
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name(NAME).table(JobRun::Table).to_owned())
            .await?;
        m.alter_table(
            Table::alter()
                .table(JobRun::Table)
                .drop_column(JobRun::Staged)
                .take(),
        )
        .await
    }
}
