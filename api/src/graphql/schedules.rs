//! Recurring jobs: a job kind with params, queued at each time a cron
//! pattern names (`worker::jobs::recurring` runs them).
use async_graphql::{Context, ID, InputObject, Json, Object};
use chrono::{DateTime, Utc};
use entity::{job_run, job_schedule};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::Value;
use worker::jobs::{self, recurring, recurring::Clock};

use super::{
    jobs::{Job, JobKind, kind_of},
    parse_id, required_text, to_id,
};
use crate::{
    context::ContextExt,
    error::{AppError, GqlResult, is_unique_violation},
    policy, tenant,
};

pub struct JobSchedule(pub job_schedule::Model);

#[Object]
impl JobSchedule {
    async fn id(&self) -> ID {
        to_id(self.0.id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn kind(&self) -> Option<JobKind> {
        kind_of(&self.0.kind)
    }
    async fn params(&self) -> Json<Value> {
        Json(self.0.params.clone())
    }
    /// Five fields (minute hour day-of-month month day-of-week; 0 or 7 =
    /// Sunday), or six with seconds first.
    async fn cron(&self) -> &str {
        &self.0.cron
    }
    /// The offset from UTC of the clock the pattern reads, now: e.g.
    /// `+08:00` (China Standard Time); for a `timeZone`, today's offset.
    async fn utc_offset(&self) -> String {
        recurring::format_offset(Clock::of(&self.0).offset_at(Utc::now()))
    }
    /// The IANA time zone whose wall clock the pattern reads, daylight
    /// saving included; null for a fixed `utcOffset`.
    async fn time_zone(&self) -> Option<&'static str> {
        Clock::of(&self.0).time_zone()
    }
    async fn max_attempts(&self) -> i32 {
        self.0.max_attempts
    }
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    /// The platform's own (the nightly persona rebuild): it can be retimed
    /// or disabled, not renamed or deleted.
    async fn builtin(&self) -> bool {
        self.0.builtin
    }
    /// The next occurrence; null while disabled.
    async fn next_run_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_run_at
    }
    /// The next `first` occurrences (1–20, default 5), from `nextRunAt` on,
    /// on the schedule's clock: a way to check a pattern. Empty while
    /// disabled.
    async fn upcoming(&self, first: Option<i32>) -> GqlResult<Vec<DateTime<Utc>>> {
        let n = first.unwrap_or(5);
        if !(1..=20).contains(&n) {
            return Err(AppError::bad_input("first", "between 1 and 20").into());
        }
        let (Some(next), Ok(pattern)) = (self.0.next_run_at, recurring::parse(&self.0.cron)) else {
            return Ok(Vec::new());
        };
        let clock = Clock::of(&self.0);
        Ok(
            std::iter::successors(Some(next), |t| recurring::next_after(&pattern, clock, *t))
                .take(n as usize)
                .collect(),
        )
    }
    /// The occurrence that queued `lastJob`.
    async fn last_run_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_run_at
    }
    /// The job of the latest occurrence (null before the first, or once purged).
    async fn last_job(&self, ctx: &Context<'_>) -> GqlResult<Option<Job>> {
        let Some(id) = self.0.last_job_id else {
            return Ok(None);
        };
        Ok(tenant::scoped::<job_run::Entity>(self.0.account_id)
            .filter(job_run::Column::Id.eq(id))
            .one(ctx.db())
            .await?
            .map(Job))
    }
    /// The jobs its occurrences queued, newest first (1–100, default 10);
    /// finished ones stay listed as long as `jobs` lists them.
    async fn recent_jobs(&self, ctx: &Context<'_>, first: Option<i32>) -> GqlResult<Vec<Job>> {
        let n = first.unwrap_or(10);
        if !(1..=100).contains(&n) {
            return Err(AppError::bad_input("first", "between 1 and 100").into());
        }
        Ok(tenant::scoped::<job_run::Entity>(self.0.account_id)
            .filter(job_run::Column::ScheduleKey.starts_with(recurring::key_prefix(self.0.id)))
            .order_by_desc(job_run::Column::Id)
            .limit(n as u64)
            .all(ctx.db())
            .await?
            .into_iter()
            .map(Job)
            .collect())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

#[derive(InputObject)]
pub struct CreateJobScheduleInput {
    /// Unique in the account.
    pub name: String,
    pub kind: JobKind,
    /// As for `enqueueJob`.
    pub params: Option<Json<Value>>,
    /// e.g. `0 3 * * *` (03:00 daily), `30 9 * * MON`, `0 */6 * * *`.
    pub cron: String,
    /// A fixed clock, e.g. `-05:00`. Default `+08:00` (China Standard Time).
    pub utc_offset: Option<String>,
    /// Or an IANA time zone, e.g. `Europe/Berlin`: the pattern then follows
    /// its wall clock through daylight saving changes (a time the spring
    /// change skips fires as the clocks jump; one repeated in the autumn
    /// fires once). Not together with `utcOffset`.
    pub time_zone: Option<String>,
    /// Attempts per occurrence before FAILED (1–10, default 3).
    pub max_attempts: Option<i32>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// Only the fields given change.
#[derive(InputObject)]
pub struct UpdateJobScheduleInput {
    pub name: Option<String>,
    pub params: Option<Json<Value>>,
    pub cron: Option<String>,
    /// Switches to this fixed clock.
    pub utc_offset: Option<String>,
    /// Switches to this IANA time zone.
    pub time_zone: Option<String>,
    pub max_attempts: Option<i32>,
    pub enabled: Option<bool>,
}

/// A schedule's settings, checked; `next_run_at` follows from them.
struct Checked {
    cron: String,
    clock: Clock,
    next_run_at: Option<DateTime<Utc>>,
}

/// The clock an input names (`utcOffset` or `timeZone`), else `fallback`.
fn clock_of(offset: Option<&str>, zone: Option<&str>, fallback: Clock) -> Result<Clock, AppError> {
    match (offset, zone) {
        (Some(_), Some(_)) => Err(AppError::bad_input(
            "input.timeZone",
            "give timeZone or utcOffset, not both / 时区与 UTC 偏移只能选一个",
        )),
        (Some(o), None) => recurring::parse_offset(o)
            .map(Clock::Offset)
            .map_err(|e| AppError::bad_input("input.utcOffset", e.to_string())),
        (None, Some(z)) => recurring::parse_time_zone(z)
            .map(Clock::Zone)
            .map_err(|e| AppError::bad_input("input.timeZone", e.to_string())),
        (None, None) => Ok(fallback),
    }
}

fn check(ctx: &Context<'_>, cron: &str, clock: Clock, enabled: bool) -> Result<Checked, AppError> {
    let cron = cron.trim().to_owned();
    if cron.chars().count() > 200 {
        return Err(AppError::bad_input("input.cron", "at most 200 characters"));
    }
    let pattern =
        recurring::parse(&cron).map_err(|e| AppError::bad_input("input.cron", e.to_string()))?;
    let first = recurring::check_interval(
        &pattern,
        clock,
        Utc::now(),
        ctx.state().config.schedule_min_gap_secs,
    )
    .map_err(|e| AppError::bad_input("input.cron", e.to_string()))?;
    Ok(Checked {
        cron,
        clock,
        next_run_at: enabled.then_some(first),
    })
}

fn check_attempts(m: Option<i32>) -> Result<(), AppError> {
    match m {
        Some(m) if !(1..=10).contains(&m) => {
            Err(AppError::bad_input("input.maxAttempts", "between 1 and 10"))
        }
        _ => Ok(()),
    }
}

fn name_taken(e: sea_orm::DbErr) -> AppError {
    if is_unique_violation(&e) {
        AppError::bad_input("input.name", "another schedule has this name / 名称已存在")
    } else {
        AppError::Db(e)
    }
}

#[derive(Default)]
pub struct SchedulesQuery;

#[Object]
impl SchedulesQuery {
    /// The account's recurring jobs, by name.
    async fn job_schedules(&self, ctx: &Context<'_>) -> GqlResult<Vec<JobSchedule>> {
        Ok(tenant::scoped::<job_schedule::Entity>(ctx.tenant()?)
            .order_by_asc(job_schedule::Column::Name)
            .all(ctx.db())
            .await?
            .into_iter()
            .map(JobSchedule)
            .collect())
    }

    /// One recurring job; null when it does not exist in this account.
    async fn job_schedule(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<JobSchedule>> {
        let id = parse_id(&id, "id")?;
        match tenant::get::<job_schedule::Entity>(ctx.db(), ctx.tenant()?, id).await {
            Ok(s) => Ok(Some(JobSchedule(s))),
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[derive(Default)]
pub struct SchedulesMutation;

#[Object]
impl SchedulesMutation {
    /// Queues `kind` with `params` at every time `cron` names, from now on.
    async fn create_job_schedule(
        &self,
        ctx: &Context<'_>,
        input: CreateJobScheduleInput,
    ) -> GqlResult<JobSchedule> {
        let account_id = ctx.tenant()?;
        let name = required_text("input.name", &input.name, 128)?;
        let params = input.params.map(|p| p.0).unwrap_or(Value::Null);
        let kind: jobs::JobKind = input.kind.into();
        jobs::enqueue::validate(kind, &params).map_err(AppError::from)?;
        policy::check_job_kind(ctx.principal()?, kind, &params)?;
        check_attempts(input.max_attempts)?;
        let enabled = input.enabled.unwrap_or(true);
        let clock = clock_of(
            input.utc_offset.as_deref(),
            input.time_zone.as_deref(),
            Clock::CST,
        )?;
        let c = check(ctx, &input.cron, clock, enabled)?;
        let row = recurring::NewSchedule {
            account_id,
            name,
            kind,
            params,
            cron: c.cron,
            clock: c.clock,
            max_attempts: input.max_attempts.unwrap_or(3),
            enabled,
            builtin: false,
            next_run_at: c.next_run_at,
        }
        .row(Utc::now())
        .insert(ctx.db())
        .await
        .map_err(name_taken)?;
        Ok(JobSchedule(row))
    }

    /// Changes a recurring job; the next occurrence follows the new
    /// pattern (or is cleared while disabled).
    async fn update_job_schedule(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateJobScheduleInput,
    ) -> GqlResult<JobSchedule> {
        let id = parse_id(&id, "id")?;
        let account_id = ctx.tenant()?;
        let old = tenant::get::<job_schedule::Entity>(ctx.db(), account_id, id).await?;
        let kind = jobs::JobKind::parse(&old.kind)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("unknown kind {}", old.kind)))?;
        // Params are checked before the policy, as enqueueJob does, so a
        // malformed edit reads BAD_USER_INPUT whoever sends it.
        if let Some(p) = &input.params {
            jobs::enqueue::validate(kind, &p.0).map_err(AppError::from)?;
        }
        let params = input.params.as_ref().map_or(&old.params, |p| &p.0);
        policy::check_job_kind(ctx.principal()?, kind, params)?;
        let mut row: job_schedule::ActiveModel = old.clone().into();
        if let Some(n) = &input.name {
            let n = required_text("input.name", n, 128)?;
            if old.builtin && n != old.name {
                return Err(AppError::bad_input(
                    "input.name",
                    "a built-in schedule keeps its name / 内置计划不能改名",
                )
                .into());
            }
            row.name = Set(n);
        }
        if let Some(p) = input.params {
            row.params = Set(jobs::enqueue::stored_params(p.0));
        }
        check_attempts(input.max_attempts)?;
        if let Some(m) = input.max_attempts {
            row.max_attempts = Set(m);
        }
        let enabled = input.enabled.unwrap_or(old.enabled);
        // An edit of other fields keeps the timing, and a due occurrence due.
        let retimed =
            input.cron.is_some() || input.utc_offset.is_some() || input.time_zone.is_some();
        if retimed || enabled != old.enabled {
            let clock = clock_of(
                input.utc_offset.as_deref(),
                input.time_zone.as_deref(),
                Clock::of(&old),
            )?;
            let c = check(
                ctx,
                input.cron.as_deref().unwrap_or(&old.cron),
                clock,
                enabled,
            )?;
            row.cron = Set(c.cron);
            row.utc_offset_minutes = Set(c.clock.offset_at(Utc::now()));
            row.time_zone = Set(c.clock.time_zone().map(str::to_owned));
            row.enabled = Set(enabled);
            row.next_run_at = Set(c.next_run_at);
        }
        row.updated_at = Set(Utc::now());
        Ok(JobSchedule(row.update(ctx.db()).await.map_err(name_taken)?))
    }

    /// Deletes a recurring job (not a built-in one); jobs it queued stay.
    async fn delete_job_schedule(&self, ctx: &Context<'_>, id: ID) -> GqlResult<bool> {
        let id = parse_id(&id, "id")?;
        let account_id = ctx.tenant()?;
        let s = tenant::get::<job_schedule::Entity>(ctx.db(), account_id, id).await?;
        if s.builtin {
            return Err(AppError::bad_input(
                "id",
                "a built-in schedule can be disabled, not deleted / 内置计划只能停用，不能删除",
            )
            .into());
        }
        job_schedule::Entity::delete_many()
            .filter(job_schedule::Column::AccountId.eq(account_id))
            .filter(job_schedule::Column::Id.eq(id))
            .exec(ctx.db())
            .await?;
        Ok(true)
    }
}
