//! Jobs: a retry budget and a key that makes scheduled (cron) jobs unique.
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum JobRun {
    Table,
    MaxAttempts,
    ScheduleKey,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        m.alter_table(
            Table::alter()
                .table(JobRun::Table)
                .add_column(
                    ColumnDef::new(JobRun::MaxAttempts)
                        .integer()
                        .not_null()
                        .default(3),
                )
                .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(JobRun::Table)
                .add_column(ColumnDef::new(JobRun::ScheduleKey).string().null())
                .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(JobRun::Table)
                .add_column(
                    ColumnDef::new(JobRun::UpdatedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_job_run_schedule_key")
                .table(JobRun::Table)
                .col(JobRun::ScheduleKey)
                .unique()
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ux_job_run_schedule_key")
                .table(JobRun::Table)
                .to_owned(),
        )
        .await?;
        for c in [JobRun::MaxAttempts, JobRun::ScheduleKey, JobRun::UpdatedAt] {
            m.alter_table(Table::alter().table(JobRun::Table).drop_column(c).take())
                .await?;
        }
        Ok(())
    }
}
