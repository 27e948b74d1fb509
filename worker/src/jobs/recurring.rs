//! Recurring jobs: an account's `job_schedule` rows, each a job kind with
//! params and a cron pattern read on a fixed UTC offset (China Standard
//! Time by default) or on an IANA time zone's wall clock, daylight saving
//! included (croner's rules: a time skipped by the spring change fires as
//! the clocks jump, a time repeated in the autumn fires once).
//!
//! Every process's scheduler tick calls [`run_due`]. An occurrence is
//! queued at most once whatever the number of processes: its job carries
//! the schedule key `schedule:<id>:<occurrence>` (unique in `job_run`) and
//! the schedule moves to its next occurrence with a compare-and-set on
//! `next_run_at`. Occurrences missed while no process ran are not replayed
//! one by one: the schedule runs once when a process comes back, then
//! follows its pattern from that moment (what a nightly rebuild needs); a
//! merely late tick (under a minute) still queues every occurrence, and an
//! occurrence whose predecessor's job has not finished is skipped.
//! apalis-cron's in-memory streams cannot follow schedules that users add
//! and change at run time, hence this table. Every account has one built-in
//! row ([`NIGHTLY`], the nightly persona rebuild), which its users can
//! retime or disable but not delete.
use std::collections::HashSet;
use std::str::FromStr as _;

use chrono::{DateTime, FixedOffset, Offset as _, Utc};
use chrono_tz::Tz;
use croner::{Cron, parser::CronParser, parser::Seconds};
use entity::{account, job_run, job_schedule};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, sea_query::Expr,
};
use uuid::Uuid;

use super::{JobKind, JobQueue, enqueue, enqueue::NewJob, status};

/// The default clock of a schedule: China Standard Time, UTC+8.
pub const CST_MINUTES: i32 = 8 * 60;

/// Schedules looked at per tick; the rest wait for the next tick.
const PER_TICK: u64 = 200;

/// A schedule to store; [`NewSchedule::row`] fills in the rest.
pub struct NewSchedule {
    pub account_id: Uuid,
    pub name: String,
    pub kind: JobKind,
    pub params: serde_json::Value,
    pub cron: String,
    pub clock: Clock,
    pub max_attempts: i32,
    pub enabled: bool,
    pub builtin: bool,
    /// The first occurrence (stored only while enabled).
    pub next_run_at: Option<DateTime<Utc>>,
}

impl NewSchedule {
    /// The new row: a fresh id, never run yet.
    pub fn row(self, now: DateTime<Utc>) -> job_schedule::ActiveModel {
        job_schedule::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(self.account_id),
            name: Set(self.name),
            kind: Set(self.kind.as_str().to_owned()),
            params: Set(super::enqueue::stored_params(self.params)),
            cron: Set(self.cron),
            utc_offset_minutes: Set(self.clock.offset_at(now)),
            time_zone: Set(self.clock.time_zone().map(str::to_owned)),
            max_attempts: Set(self.max_attempts),
            enabled: Set(self.enabled),
            builtin: Set(self.builtin),
            next_run_at: Set(self.next_run_at.filter(|_| self.enabled)),
            last_run_at: Set(None),
            last_job_id: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
    }
}

/// The built-in schedule every account gets: name, kind, pattern.
pub const NIGHTLY: (&str, JobKind, &str) = ("每晚重建画像", JobKind::BuildPersonas, "0 3 * * *");

/// Gives `account` (or every account lacking it) the built-in nightly
/// persona rebuild, enabled, at 03:00 China Standard Time. Accounts that
/// have it keep it as they set it. Returns how many were created. Called
/// for a new account where it is created, and for all of them by
/// [`crate::config::migrate`] under the migration lock, so no two calls
/// race for one account.
///
/// # Errors
/// Database errors.
pub async fn ensure_builtin(
    db: &impl ConnectionTrait,
    account: Option<Uuid>,
) -> Result<usize, sea_orm::DbErr> {
    let mut accounts = account::Entity::find()
        .select_only()
        .column(account::Column::Id);
    if let Some(a) = account {
        accounts = accounts.filter(account::Column::Id.eq(a));
    }
    let accounts: Vec<Uuid> = accounts.into_tuple().all(db).await?;
    let mut have = job_schedule::Entity::find()
        .select_only()
        .column(job_schedule::Column::AccountId)
        .filter(job_schedule::Column::Builtin.eq(true));
    if let Some(a) = account {
        have = have.filter(job_schedule::Column::AccountId.eq(a));
    }
    let have: HashSet<Uuid> = have.into_tuple().all(db).await?.into_iter().collect();
    let (name, kind, cron) = NIGHTLY;
    let now = Utc::now();
    let next = parse(cron)
        .ok()
        .and_then(|c| next_after(&c, Clock::CST, now));
    let mut created = 0;
    for a in accounts.into_iter().filter(|a| !have.contains(a)) {
        let row = NewSchedule {
            account_id: a,
            name: name.to_owned(),
            kind,
            params: serde_json::json!({}),
            cron: cron.to_owned(),
            clock: Clock::CST,
            max_attempts: 3,
            enabled: true,
            builtin: true,
            next_run_at: next,
        }
        .row(now);
        row.insert(db).await?;
        created += 1;
    }
    Ok(created)
}

/// Why a pattern or offset was refused; the message is for the user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("not a cron pattern: {0}")]
    Pattern(String),
    #[error("the pattern never fires")]
    Never,
    #[error("fires every {gap} s; at least {min} s apart, please")]
    TooOften { gap: i64, min: i64 },
    #[error("expected an offset such as +08:00 or -05:30")]
    Offset,
    #[error(
        "unknown time zone {0:?}: expected an IANA name such as Asia/Shanghai or Europe/Berlin"
    )]
    TimeZone(String),
}

/// The wall clock a schedule's pattern reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Minutes east of UTC, all year.
    Offset(i32),
    /// An IANA time zone, daylight saving included.
    Zone(Tz),
}

impl Clock {
    /// China Standard Time, the default.
    pub const CST: Clock = Clock::Offset(CST_MINUTES);

    /// A stored schedule's clock. A zone name the compiled-in tz database
    /// no longer knows falls back to the offset stored beside it.
    pub fn of(s: &job_schedule::Model) -> Self {
        s.time_zone
            .as_deref()
            .and_then(|z| z.parse::<Tz>().ok())
            .map_or(Clock::Offset(s.utc_offset_minutes), Clock::Zone)
    }

    /// Minutes east of UTC at `at`.
    pub fn offset_at(&self, at: DateTime<Utc>) -> i32 {
        match self {
            Clock::Offset(m) => *m,
            Clock::Zone(tz) => at.with_timezone(tz).offset().fix().local_minus_utc() / 60,
        }
    }

    /// The IANA name, for a zone clock.
    pub fn time_zone(&self) -> Option<&'static str> {
        match self {
            Clock::Offset(_) => None,
            Clock::Zone(tz) => Some(tz.name()),
        }
    }
}

/// `Europe/Berlin`, `America/New_York`, `UTC` → the zone (exact IANA
/// spelling; case-insensitive as a courtesy).
///
/// # Errors
/// [`ScheduleError::TimeZone`] for a name the tz database does not have.
pub fn parse_time_zone(s: &str) -> Result<Tz, ScheduleError> {
    let s = s.trim();
    s.parse::<Tz>()
        .ok()
        .or_else(|| {
            chrono_tz::TZ_VARIANTS
                .iter()
                .copied()
                .find(|tz| tz.name().eq_ignore_ascii_case(s))
        })
        .ok_or_else(|| ScheduleError::TimeZone(s.chars().take(64).collect()))
}

/// Parses a five-field pattern (minute hour day-of-month month
/// day-of-week, POSIX weekdays: 0 or 7 = Sunday) or six fields with
/// seconds first; names (`MON`, `JAN`) and `@daily`-style aliases work.
///
/// # Errors
/// [`ScheduleError::Pattern`] with the parser's reason.
pub fn parse(pattern: &str) -> Result<Cron, ScheduleError> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(pattern)
        .map_err(|e| ScheduleError::Pattern(e.to_string()))
}

/// `+08:00` / `-05:30` / `Z` → minutes east of UTC.
///
/// # Errors
/// [`ScheduleError::Offset`] for anything else, or beyond ±14 h.
pub fn parse_offset(s: &str) -> Result<i32, ScheduleError> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let o = FixedOffset::from_str(s).map_err(|_| ScheduleError::Offset)?;
    let m = o.local_minus_utc() / 60;
    if m.abs() > 14 * 60 {
        return Err(ScheduleError::Offset);
    }
    Ok(m)
}

/// `480` → `+08:00`.
pub fn format_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    let m = minutes.abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

fn fixed(offset_minutes: i32) -> FixedOffset {
    FixedOffset::east_opt(offset_minutes * 60)
        .unwrap_or_else(|| FixedOffset::east_opt(CST_MINUTES * 60).expect("valid offset"))
}

/// The first occurrence strictly after `after`.
pub fn next_after(cron: &Cron, clock: Clock, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match clock {
        Clock::Offset(m) => cron
            .find_next_occurrence(&after.with_timezone(&fixed(m)), false)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        Clock::Zone(tz) => cron
            .find_next_occurrence(&after.with_timezone(&tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
    }
}

/// The start of the schedule key of every job `schedule` queues (the
/// occurrence's Unix milliseconds follow).
pub fn key_prefix(schedule: Uuid) -> String {
    format!("schedule:{schedule}:")
}

/// A late tick still queues the occurrence after `occurrence` if it is
/// less than this overdue; older ones are skipped.
const CATCH_UP: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The occurrence to queue after `occurrence`, at `now`: the next one of
/// the pattern, unless it is more than [`CATCH_UP`] overdue (the process
/// was down): then the first one after `now`.
pub fn following(
    cron: &Cron,
    clock: Clock,
    occurrence: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match next_after(cron, clock, occurrence) {
        Some(n) if n >= now - CATCH_UP => Some(n),
        _ => next_after(cron, clock, now),
    }
}

/// Checks that `cron` fires, and never twice within `min_gap_secs`
/// (over its next occurrences from `now`).
///
/// # Errors
/// [`ScheduleError::Never`] or [`ScheduleError::TooOften`].
pub fn check_interval(
    cron: &Cron,
    clock: Clock,
    now: DateTime<Utc>,
    min_gap_secs: i64,
) -> Result<DateTime<Utc>, ScheduleError> {
    let first = next_after(cron, clock, now).ok_or(ScheduleError::Never)?;
    let mut prev = first;
    for _ in 0..8 {
        let Some(next) = next_after(cron, clock, prev) else {
            break;
        };
        let gap = (next - prev).num_seconds();
        if gap < min_gap_secs {
            return Err(ScheduleError::TooOften {
                gap,
                min: min_gap_secs,
            });
        }
        prev = next;
    }
    Ok(first)
}

/// Queues every due occurrence of every enabled schedule and moves each
/// schedule to its next occurrence. Returns how many jobs this call queued.
///
/// # Errors
/// Database errors of the scan; a schedule that fails is logged and
/// retried at the next tick.
pub async fn run_due(db: &DatabaseConnection, queue: &JobQueue) -> anyhow::Result<usize> {
    let now = Utc::now();
    let due = job_schedule::Entity::find()
        .filter(job_schedule::Column::Enabled.eq(true))
        .filter(job_schedule::Column::NextRunAt.lte(now))
        .order_by_asc(job_schedule::Column::NextRunAt)
        .limit(PER_TICK)
        .all(db)
        .await?;
    let mut queued = 0;
    for s in due {
        match run_one(db, queue, &s, now).await {
            Ok(true) => queued += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(schedule_id = %s.id, error = %e, "a recurring job could not be queued")
            }
        }
    }
    Ok(queued)
}

async fn run_one(
    db: &DatabaseConnection,
    queue: &JobQueue,
    s: &job_schedule::Model,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let Some(occurrence) = s.next_run_at else {
        return Ok(false);
    };
    let kind =
        JobKind::parse(&s.kind).ok_or_else(|| anyhow::anyhow!("unknown job kind {:?}", s.kind))?;
    // The pattern was checked when stored; `None` would mean it can no
    // longer fire (e.g. a year field in the past): disable it then.
    let next = parse(&s.cron)
        .ok()
        .and_then(|c| following(&c, Clock::of(s), occurrence, now));
    // No pile-up: while the previous occurrence's job has not finished,
    // this occurrence is skipped.
    if let Some(prev) = s.last_job_id {
        let busy = job_run::Entity::find_by_id(prev)
            .filter(job_run::Column::Status.is_in([status::QUEUED, status::RUNNING]))
            .count(db)
            .await?
            > 0;
        if busy {
            advance(db, s, occurrence, next, None, now).await?;
            tracing::info!(schedule_id = %s.id, "the previous job has not finished: occurrence skipped");
            return Ok(false);
        }
    }
    let job = NewJob {
        max_attempts: s.max_attempts,
        schedule_key: Some(format!(
            "{}{}",
            key_prefix(s.id),
            occurrence.timestamp_millis()
        )),
        ..NewJob::now(s.account_id, kind, s.params.clone())
    };
    let row = enqueue(db, queue, job).await?;
    advance(db, s, occurrence, next, row.as_ref().map(|r| r.id), now).await?;
    if let Some(r) = &row {
        tracing::info!(schedule_id = %s.id, job_id = %r.id, kind = kind.as_str(), "recurring job queued");
    }
    Ok(row.is_some())
}

/// Moves `s` from `occurrence` to `next` (disabling it when there is none),
/// recording `job` as its latest when one was queued; only if no other
/// process (or an edit) moved it meanwhile.
async fn advance(
    db: &DatabaseConnection,
    s: &job_schedule::Model,
    occurrence: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    job: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    let mut update = job_schedule::Entity::update_many()
        .col_expr(job_schedule::Column::NextRunAt, Expr::value(next))
        .col_expr(job_schedule::Column::UpdatedAt, Expr::value(now));
    if let Some(id) = job {
        update = update
            .col_expr(job_schedule::Column::LastJobId, Expr::value(Some(id)))
            .col_expr(
                job_schedule::Column::LastRunAt,
                Expr::value(Some(occurrence)),
            );
    }
    if next.is_none() {
        update = update.col_expr(job_schedule::Column::Enabled, Expr::value(false));
    }
    update
        .filter(job_schedule::Column::Id.eq(s.id))
        .filter(job_schedule::Column::NextRunAt.eq(occurrence))
        .exec(db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const UTC0: Clock = Clock::Offset(0);

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn five_fields_read_on_china_time_with_posix_weekdays() {
        let c = parse("0 3 * * *").unwrap();
        // 20:00 CST on the 27th → 03:00 CST on the 28th = 19:00 UTC on the 27th.
        let now = utc(2026, 11, 27, 12, 0, 0);
        assert_eq!(
            next_after(&c, Clock::CST, now),
            Some(utc(2026, 11, 27, 19, 0, 0))
        );
        // 1 = Monday (POSIX), not Sunday as in Quartz: 2026-11-30 is a Monday.
        let monday = parse("30 9 * * 1").unwrap();
        assert_eq!(
            next_after(&monday, Clock::CST, now),
            Some(utc(2026, 11, 30, 1, 30, 0))
        );
        assert_eq!(
            next_after(&parse("30 9 * * MON").unwrap(), Clock::CST, now),
            Some(utc(2026, 11, 30, 1, 30, 0))
        );
        // The same pattern on UTC.
        assert_eq!(next_after(&c, UTC0, now), Some(utc(2026, 11, 28, 3, 0, 0)));
        // Strictly after: an occurrence equal to `after` is not returned.
        let at = utc(2026, 11, 27, 19, 0, 0);
        assert_eq!(
            next_after(&c, Clock::CST, at),
            Some(utc(2026, 11, 28, 19, 0, 0))
        );
    }

    #[test]
    fn a_late_tick_catches_up_but_a_long_outage_is_not_replayed() {
        let c = parse("* * * * *").unwrap();
        let t = utc(2026, 11, 27, 12, 0, 0);
        // Handled 5 s late: the next minute is still ahead.
        let now = t + chrono::TimeDelta::seconds(5);
        assert_eq!(
            following(&c, UTC0, t, now),
            Some(utc(2026, 11, 27, 12, 1, 0))
        );
        // Handled 70 s late: 12:01 is 10 s overdue and still queued.
        let now = t + chrono::TimeDelta::seconds(70);
        assert_eq!(
            following(&c, UTC0, t, now),
            Some(utc(2026, 11, 27, 12, 1, 0))
        );
        // After an hour down: from now on, no replay of the missed ones.
        let now = t + chrono::TimeDelta::seconds(3600 + 5);
        assert_eq!(
            following(&c, UTC0, t, now),
            Some(utc(2026, 11, 27, 13, 1, 0))
        );
    }

    #[test]
    fn the_builtin_nightly_runs_at_3am_china_time() {
        let c = parse(NIGHTLY.2).unwrap();
        let now = utc(2026, 11, 27, 12, 0, 0); // 20:00 CST
        assert_eq!(
            next_after(&c, Clock::CST, now),
            Some(utc(2026, 11, 27, 19, 0, 0))
        );
        let early = utc(2026, 11, 27, 18, 0, 0); // 02:00 CST on the 28th
        assert_eq!(
            next_after(&c, Clock::CST, early),
            Some(utc(2026, 11, 27, 19, 0, 0))
        );
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let c = parse("*/10 * * * * *").unwrap();
        let now = utc(2026, 11, 27, 12, 0, 3);
        assert_eq!(
            next_after(&c, UTC0, now),
            Some(utc(2026, 11, 27, 12, 0, 10))
        );
    }

    #[test]
    fn bad_patterns_and_offsets_are_refused() {
        for p in ["", "* * *", "61 * * * *", "* * * * * * * *", "hello"] {
            assert!(matches!(parse(p), Err(ScheduleError::Pattern(_))), "{p:?}");
        }
        assert_eq!(parse_offset("+08:00"), Ok(480));
        assert_eq!(parse_offset("-05:30"), Ok(-330));
        assert_eq!(parse_offset("Z"), Ok(0));
        for o in ["8", "+25:00", "CST", ""] {
            assert_eq!(parse_offset(o), Err(ScheduleError::Offset), "{o:?}");
        }
        assert_eq!(format_offset(480), "+08:00");
        assert_eq!(format_offset(-330), "-05:30");
    }

    #[test]
    fn patterns_firing_too_often_are_refused() {
        let now = utc(2026, 11, 27, 12, 0, 0);
        let every_minute = parse("* * * * *").unwrap();
        assert_eq!(
            check_interval(&every_minute, UTC0, now, 60),
            Ok(utc(2026, 11, 27, 12, 1, 0))
        );
        assert_eq!(
            check_interval(&every_minute, UTC0, now, 61),
            Err(ScheduleError::TooOften { gap: 60, min: 61 })
        );
        // Irregular gaps count by their shortest.
        assert!(matches!(
            check_interval(&parse("0,1 3 * * *").unwrap(), UTC0, now, 3600),
            Err(ScheduleError::TooOften { gap: 60, .. })
        ));
    }

    #[test]
    fn a_time_zone_follows_daylight_saving() {
        let berlin = parse_time_zone("Europe/Berlin").unwrap();
        let nine = parse("0 9 * * *").unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter (CET) and 07:00 UTC in
        // summer (CEST); the clocks went forward on 2027-03-28.
        let before = utc(2027, 3, 26, 12, 0, 0);
        assert_eq!(
            next_after(&nine, Clock::Zone(berlin), before),
            Some(utc(2027, 3, 27, 8, 0, 0))
        );
        assert_eq!(
            next_after(&nine, Clock::Zone(berlin), utc(2027, 3, 27, 8, 0, 0)),
            Some(utc(2027, 3, 28, 7, 0, 0))
        );
        // A fixed offset does not move.
        assert_eq!(
            next_after(&nine, Clock::Offset(60), utc(2027, 3, 27, 8, 0, 0)),
            Some(utc(2027, 3, 28, 8, 0, 0))
        );
        // 02:30 does not exist in Berlin on 2027-03-28: that night's run is
        // not lost, it fires as the clocks jump (03:00 CEST = 01:00 UTC).
        let half_past_two = parse("30 2 * * *").unwrap();
        assert_eq!(
            next_after(
                &half_past_two,
                Clock::Zone(berlin),
                utc(2027, 3, 27, 12, 0, 0)
            ),
            Some(utc(2027, 3, 28, 1, 0, 0))
        );
        // 02:30 happens twice on 2027-10-31 (fall back): it runs once.
        let first = next_after(
            &half_past_two,
            Clock::Zone(berlin),
            utc(2027, 10, 30, 12, 0, 0),
        );
        assert_eq!(first, Some(utc(2027, 10, 31, 0, 30, 0)));
        assert_eq!(
            next_after(&half_past_two, Clock::Zone(berlin), first.unwrap()),
            Some(utc(2027, 11, 1, 1, 30, 0))
        );
        assert_eq!(Clock::Zone(berlin).offset_at(before), 60);
        assert_eq!(Clock::Zone(berlin).offset_at(utc(2027, 7, 1, 0, 0, 0)), 120);
        assert_eq!(Clock::Zone(berlin).time_zone(), Some("Europe/Berlin"));
    }

    #[test]
    fn time_zone_names_are_checked() {
        assert_eq!(
            parse_time_zone("Asia/Shanghai").unwrap().name(),
            "Asia/Shanghai"
        );
        assert_eq!(
            parse_time_zone(" asia/shanghai ").unwrap().name(),
            "Asia/Shanghai"
        );
        assert_eq!(parse_time_zone("UTC").unwrap().name(), "UTC");
        for bad in ["", "Mars/Olympus", "+08:00", "Beijing"] {
            assert!(
                matches!(parse_time_zone(bad), Err(ScheduleError::TimeZone(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_stored_schedule_reads_its_zone_or_its_offset() {
        let now = Utc::now();
        let mut row = NewSchedule {
            account_id: Uuid::nil(),
            name: "n".into(),
            kind: JobKind::BuildPersonas,
            params: serde_json::json!({}),
            cron: "0 3 * * *".into(),
            clock: Clock::Zone(parse_time_zone("America/New_York").unwrap()),
            max_attempts: 3,
            enabled: true,
            builtin: false,
            next_run_at: None,
        }
        .row(now);
        let model = |r: &job_schedule::ActiveModel| job_schedule::Model {
            id: Uuid::nil(),
            account_id: Uuid::nil(),
            name: String::new(),
            kind: String::new(),
            params: serde_json::json!({}),
            cron: String::new(),
            utc_offset_minutes: *r.utc_offset_minutes.as_ref(),
            max_attempts: 3,
            enabled: true,
            builtin: false,
            next_run_at: None,
            last_run_at: None,
            last_job_id: None,
            created_at: now,
            updated_at: now,
            time_zone: r.time_zone.as_ref().clone(),
        };
        let m = model(&row);
        assert_eq!(m.time_zone.as_deref(), Some("America/New_York"));
        assert!(matches!(Clock::of(&m), Clock::Zone(tz) if tz.name() == "America/New_York"));
        // An unknown stored zone falls back to the offset beside it.
        row.time_zone = Set(Some("Atlantis/Capital".into()));
        row.utc_offset_minutes = Set(-300);
        assert_eq!(Clock::of(&model(&row)), Clock::Offset(-300));
    }
}
