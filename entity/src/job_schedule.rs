//! A recurring job: `kind` with `params`, queued at each time `cron` names.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "job_schedule")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub account_id: Uuid,
    /// Unique per account.
    pub name: String,
    /// A job kind (`ANALYZE_TEXTS`, `BUILD_PERSONAS`, …).
    pub kind: String,
    pub params: Json,
    /// Five fields (minute hour day-of-month month day-of-week), or six
    /// with seconds first.
    pub cron: String,
    /// The clock `cron` reads: minutes east of UTC (480 = China Standard
    /// Time), unless `time_zone` is set.
    pub utc_offset_minutes: i32,
    pub max_attempts: i32,
    pub enabled: bool,
    /// Created by the platform for every account (the nightly persona
    /// rebuild): its timing can change, its name and existence cannot.
    pub builtin: bool,
    /// The next occurrence; null while disabled.
    pub next_run_at: Option<DateTimeUtc>,
    /// The occurrence that queued `last_job_id`.
    pub last_run_at: Option<DateTimeUtc>,
    pub last_job_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// An IANA time zone (`Europe/Berlin`) whose wall clock `cron` reads,
    /// daylight saving included; null: the fixed `utc_offset_minutes`.
    pub time_zone: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
