//! Recurring jobs: a cron schedule per row, owned by an account; `builtin`
//! rows (the nightly persona rebuild) can be changed or disabled, not deleted.
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum JobSchedule {
    Table,
    Id,
    AccountId,
    Name,
    Kind,
    Params,
    Cron,
    UtcOffsetMinutes,
    MaxAttempts,
    Enabled,
    Builtin,
    NextRunAt,
    LastRunAt,
    LastJobId,
    CreatedAt,
    UpdatedAt,
}

fn ts(col: JobSchedule, null: bool) -> ColumnDef {
    let mut c = ColumnDef::new(col);
    c.timestamp_with_time_zone();
    if null {
        c.null()
    } else {
        c.not_null()
    };
    c.take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use JobSchedule as S;
        m.create_table(
            Table::create()
                .table(S::Table)
                .if_not_exists()
                .col(ColumnDef::new(S::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(S::AccountId).uuid().not_null())
                .col(ColumnDef::new(S::Name).string().not_null())
                .col(ColumnDef::new(S::Kind).string().not_null())
                .col(ColumnDef::new(S::Params).json_binary().not_null())
                .col(ColumnDef::new(S::Cron).string().not_null())
                .col(ColumnDef::new(S::UtcOffsetMinutes).integer().not_null())
                .col(ColumnDef::new(S::MaxAttempts).integer().not_null())
                .col(ColumnDef::new(S::Enabled).boolean().not_null())
                .col(
                    ColumnDef::new(S::Builtin)
                        .boolean()
                        .not_null()
                        .default(false),
                )
                .col(ts(S::NextRunAt, true))
                .col(ts(S::LastRunAt, true))
                .col(ColumnDef::new(S::LastJobId).uuid().null())
                .col(ts(S::CreatedAt, false))
                .col(ts(S::UpdatedAt, false))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_job_schedule_account_name")
                .table(S::Table)
                .col(S::AccountId)
                .col(S::Name)
                .unique()
                .if_not_exists()
                .take(),
        )
        .await?;
        // The scheduler's scan: enabled schedules that are due.
        m.create_index(
            Index::create()
                .name("ix_job_schedule_due")
                .table(S::Table)
                .col(S::Enabled)
                .col(S::NextRunAt)
                .if_not_exists()
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(JobSchedule::Table).take())
            .await
    }
}
