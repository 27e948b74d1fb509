//! Database migrations, one file per change; each runs on SQLite and PostgreSQL.
pub use sea_orm_migration::prelude::*;

mod m20261127_000001_create_core_tables;
mod m20261127_000002_job_scheduling;
mod m20261130_000003_member_history_indexes;
mod m20261130_000004_job_schedules;
mod m20261206_000005_schedule_time_zone;
mod m20261206_000006_job_run_status_index;
mod m20261207_000007_sentiment_examples;
mod m20261207_000008_model_files;
mod m20261207_000009_message_sentiment_model;
mod m20261207_000010_job_run_staged;
mod m20261207_000011_message_scored_by_index;
mod m20261207_000012_job_run_heartbeat;
mod m20261207_000013_message_head_input;
mod m20261208_000014_member_touch;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_create_core_tables::Migration),
            Box::new(m20261127_000002_job_scheduling::Migration),
            Box::new(m20261130_000003_member_history_indexes::Migration),
            Box::new(m20261130_000004_job_schedules::Migration),
            Box::new(m20261206_000005_schedule_time_zone::Migration),
            Box::new(m20261206_000006_job_run_status_index::Migration),
            Box::new(m20261207_000007_sentiment_examples::Migration),
            Box::new(m20261207_000008_model_files::Migration),
            Box::new(m20261207_000009_message_sentiment_model::Migration),
            Box::new(m20261207_000010_job_run_staged::Migration),
            Box::new(m20261207_000011_message_scored_by_index::Migration),
            Box::new(m20261207_000012_job_run_heartbeat::Migration),
            Box::new(m20261207_000013_message_head_input::Migration),
            Box::new(m20261208_000014_member_touch::Migration),
        ]
    }
}
