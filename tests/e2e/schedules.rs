//! Recurring jobs (`createJobSchedule` …) over GraphQL.
use std::time::Duration;

use serde_json::{Value, json};
use tests::{ADMIN_KEY, Options, Server, error_code, eventually};

const CREATE: &str = "mutation($i: CreateJobScheduleInput!) { createJobSchedule(input: $i) { id name kind params cron utcOffset maxAttempts enabled nextRunAt lastRunAt lastJob { id } } }";
const UPDATE: &str = "mutation($id: ID!, $i: UpdateJobScheduleInput!) { updateJobSchedule(id: $id, input: $i) { id name enabled cron nextRunAt } }";
const GET: &str = "query($id: ID!) { jobSchedule(id: $id) { name enabled nextRunAt lastRunAt lastJob { id kind status params } } }";
const LIST: &str = "{ jobSchedules { name builtin } }";

/// What every account has from the start: the built-in nightly rebuild.
fn only_builtin() -> Value {
    json!([{ "name": "每晚重建画像", "builtin": true }])
}

/// A server whose schedules may fire every second, so tests need not wait minutes.
async fn server() -> Server {
    Server::start_with(Options {
        extra_env: vec![
            ("LINGXI_SCHEDULE_MIN_SECS".into(), "1".into()),
            ("LINGXI_MODELS".into(), "off".into()),
        ],
        ..Default::default()
    })
    .await
}

/// A `DateTime` field of a response.
fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a date-time: {v}"))
}

async fn schedule(s: &Server, id: &Value) -> Value {
    s.gql(GET, json!({ "id": id })).await["jobSchedule"].clone()
}

async fn jobs_of_kind(s: &Server, kind: &str) -> usize {
    let q = format!("{{ jobs(first: 500, kind: {kind}) {{ edges {{ node {{ kind }} }} }} }}");
    let d = s.gql(&q, json!({})).await;
    let edges = d["jobs"]["edges"].as_array().unwrap();
    assert!(edges.iter().all(|e| e["node"]["kind"] == kind), "{d}");
    edges.len()
}

#[tokio::test]
async fn a_recurring_job_runs_at_its_times_until_disabled() {
    let s = server().await;
    // A second process with its own scheduler: occurrences must still be queued once.
    let mut worker = [s.spawn_worker(1)];
    tests::all_started(&mut worker, |i| s.worker_log(i), "worker started").await;
    // A one-off job of another kind, which `jobs(kind:)` must leave out.
    s.gql(
        "mutation { enqueueJob(input: { kind: BUILD_PERSONAS }) { id } }",
        json!({}),
    )
    .await;
    let created = s
        .gql(
            CREATE,
            json!({ "i": {
                "name": "每两秒重建画像",
                "kind": "INDEX_PERSONAS",
                "params": { "memberIds": [] },
                "cron": "*/2 * * * * *",
                "maxAttempts": 2
            } }),
        )
        .await["createJobSchedule"]
        .clone();
    assert_eq!(created["utcOffset"], "+08:00", "{created}");
    assert_eq!(created["enabled"], true);
    assert!(created["lastJob"].is_null());
    let id = created["id"].clone();
    let first_due = time(&created["nextRunAt"]);
    assert!(first_due > chrono::Utc::now() - chrono::Duration::seconds(1));

    // It fires: a job of its kind and params is queued and succeeds.
    let done = eventually(30, || async {
        let sc = schedule(&s, &id).await;
        (sc["lastJob"]["status"] == "SUCCEEDED").then_some(sc)
    })
    .await
    .expect("the schedule's job ran");
    assert_eq!(done["lastJob"]["kind"], "INDEX_PERSONAS", "{done}");
    assert_eq!(done["lastJob"]["params"], json!({ "memberIds": [] }));
    let ran_at = time(&done["lastRunAt"]);
    let next = time(&done["nextRunAt"]);
    assert!(ran_at >= first_due && next > ran_at, "{done}");
    // And again at later occurrences, once per occurrence.
    let first_job = done["lastJob"]["id"].clone();
    eventually(30, || async {
        let sc = schedule(&s, &id).await;
        (sc["lastJob"]["id"] != first_job).then_some(())
    })
    .await
    .expect("a second occurrence ran");
    let last = time(&schedule(&s, &id).await["lastRunAt"]);
    let keys = s
        .sql_count("SELECT COUNT(*) FROM job_run WHERE schedule_key LIKE 'schedule:%'")
        .await;
    let distinct = s
        .sql_count(
            "SELECT COUNT(DISTINCT schedule_key) FROM job_run WHERE schedule_key LIKE 'schedule:%'",
        )
        .await;
    assert!(
        keys >= 2 && keys == distinct,
        "{keys} jobs, {distinct} occurrences"
    );
    // None skipped while both schedulers ran (a late tick catches up).
    let span = (last - first_due).num_seconds() / 2 + 1;
    assert!(keys >= span, "{keys} jobs for {span} occurrences");

    // Its history, newest first: the latest is `lastJob`.
    let recent = s
        .gql(
            "query($id: ID!) { jobSchedule(id: $id) { lastJob { id } recentJobs(first: 100) { id kind } } }",
            json!({ "id": id }),
        )
        .await["jobSchedule"]
        .clone();
    let listed = recent["recentJobs"].as_array().unwrap();
    assert!(listed.len() as i64 >= keys, "{recent}");
    assert!(listed.iter().all(|j| j["kind"] == "INDEX_PERSONAS"));
    assert!(
        listed.iter().any(|j| j["id"] == recent["lastJob"]["id"]),
        "{recent}"
    );

    // No pile-up: while the latest job has not finished (here: put back to
    // QUEUED behind the scheduler's back), occurrences are skipped. Twice, in
    // case a tick queued a job between the check and the first update.
    let requeue = "UPDATE job_run SET status = 'QUEUED' WHERE schedule_key LIKE 'schedule:%' AND status = 'SUCCEEDED'";
    s.sql_exec(requeue).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    s.sql_exec(requeue).await;
    let stuck = schedule(&s, &id).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = schedule(&s, &id).await;
    assert_eq!(later["lastJob"]["id"], stuck["lastJob"]["id"], "{later}");
    assert_eq!(later["lastJob"]["status"], "QUEUED");
    assert!(
        time(&later["nextRunAt"]) > time(&stuck["nextRunAt"]),
        "{later}"
    );
    // Once it is done, occurrences queue jobs again.
    s.sql_exec(
        "UPDATE job_run SET status = 'SUCCEEDED' WHERE schedule_key LIKE 'schedule:%' AND status = 'QUEUED'",
    )
    .await;
    eventually(30, || async {
        let sc = schedule(&s, &id).await;
        (sc["lastJob"]["id"] != stuck["lastJob"]["id"]).then_some(())
    })
    .await
    .expect("occurrences queue jobs again");

    // Disabled: no next run, and no new jobs.
    let off = s
        .gql(UPDATE, json!({ "id": id, "i": { "enabled": false } }))
        .await["updateJobSchedule"]
        .clone();
    assert_eq!(off["enabled"], false);
    assert!(off["nextRunAt"].is_null(), "{off}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = jobs_of_kind(&s, "INDEX_PERSONAS").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(jobs_of_kind(&s, "INDEX_PERSONAS").await, before);

    // Re-enabled on a daily pattern: the next run is tomorrow's (or today's) 03:00 in China.
    let daily = s
        .gql(
            UPDATE,
            json!({ "id": id, "i": { "enabled": true, "cron": "0 3 * * *" } }),
        )
        .await["updateJobSchedule"]
        .clone();
    let at = time(&daily["nextRunAt"]);
    assert_eq!(at.format("%H:%M:%S").to_string(), "19:00:00", "{daily}");
    assert!(at > chrono::Utc::now() && at <= chrono::Utc::now() + chrono::Duration::days(1));

    // Deleted: gone from the list, its jobs stay.
    let del = s
        .gql(
            "mutation($id: ID!) { deleteJobSchedule(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(del["deleteJobSchedule"], true);
    assert_eq!(s.gql(LIST, json!({})).await["jobSchedules"], only_builtin());
    assert!(jobs_of_kind(&s, "INDEX_PERSONAS").await >= 2);
}

#[tokio::test]
async fn bad_schedules_are_bad_user_input_and_store_nothing() {
    let s = Server::start().await;
    let base = json!({ "name": "nightly", "kind": "BUILD_PERSONAS", "cron": "0 3 * * *" });
    let with = |k: &str, v: Value| {
        let mut i = base.clone();
        i[k] = v;
        json!({ "i": i })
    };
    for (vars, field) in [
        (with("cron", json!("61 * * * *")), "input.cron"),
        (with("cron", json!("every day")), "input.cron"),
        (
            with("cron", json!(format!("0 3 * * {}", "1,".repeat(200)))),
            "input.cron",
        ),
        // More often than the default minimum of 60 s.
        (with("cron", json!("*/10 * * * * *")), "input.cron"),
        (with("utcOffset", json!("Beijing")), "input.utcOffset"),
        (with("timeZone", json!("Mars/Olympus")), "input.timeZone"),
        (with("timeZone", json!("+08:00")), "input.timeZone"),
        (
            {
                let mut v = with("timeZone", json!("Europe/Berlin"));
                v["i"]["utcOffset"] = json!("+01:00");
                v
            },
            "input.timeZone",
        ),
        (
            with("params", json!({ "colour": "red" })),
            "input.params.colour",
        ),
        (with("maxAttempts", json!(11)), "input.maxAttempts"),
        (with("name", json!("  ")), "input.name"),
    ] {
        let body = s
            .err_as(Some(ADMIN_KEY), CREATE, vars.clone(), "BAD_USER_INPUT")
            .await;
        assert_eq!(
            body["errors"][0]["extensions"]["field"], field,
            "{vars}: {body}"
        );
    }
    assert_eq!(s.gql(LIST, json!({})).await["jobSchedules"], only_builtin());

    // Names are unique per account.
    let ok = s.gql(CREATE, json!({ "i": base })).await["createJobSchedule"].clone();
    assert_eq!(ok["name"], "nightly");
    let dup = s
        .err_as(
            Some(ADMIN_KEY),
            CREATE,
            json!({ "i": base }),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(dup["errors"][0]["extensions"]["field"], "input.name");
    // A bad update changes nothing.
    let bad = s
        .err_as(
            Some(ADMIN_KEY),
            UPDATE,
            json!({ "id": ok["id"], "i": { "cron": "nope", "name": "renamed" } }),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(error_code(&bad).as_deref(), Some("BAD_USER_INPUT"));
    let kept = schedule(&s, &ok["id"]).await;
    assert_eq!(kept["name"], "nightly", "{kept}");
    assert_eq!(kept["nextRunAt"], ok["nextRunAt"]);

    let body = s
        .err_as(
            Some(ADMIN_KEY),
            "query($id: ID!) { jobSchedule(id: $id) { recentJobs(first: 0) { id } } }",
            json!({ "id": ok["id"] }),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "first");

    // Retraining the shared sentiment head is the operator's, queued or scheduled.
    let (_, tenant_admin) = s.new_account("租户品牌").await;
    s.err_as(
        Some(&tenant_admin),
        CREATE,
        json!({ "i": { "name": "重训", "kind": "RETRAIN_SENTIMENT", "cron": "0 2 * * SUN" } }),
        "FORBIDDEN",
    )
    .await;
    s.err_as(
        Some(&tenant_admin),
        "mutation { enqueueJob(input: { kind: RETRAIN_SENTIMENT }) { id } }",
        json!({}),
        "FORBIDDEN",
    )
    .await;
    let theirs = s
        .ok_as(&tenant_admin, "{ jobs { totalCount } }", json!({}))
        .await;
    assert_eq!(theirs["jobs"]["totalCount"], 0);

    // Integration keys may not manage schedules; another account does not see them.
    let integration = s.new_key(ADMIN_KEY, "INTEGRATION").await;
    s.err_as(Some(&integration), LIST, json!({}), "FORBIDDEN")
        .await;
    let (_, other_admin) = s.new_account("别的品牌").await;
    let theirs = s.ok_as(&other_admin, LIST, json!({})).await;
    // Only its own built-in one.
    assert_eq!(theirs["jobSchedules"], only_builtin());
    let missing = s.ok_as(&other_admin, GET, json!({ "id": ok["id"] })).await;
    assert!(missing["jobSchedule"].is_null());
}

#[tokio::test]
async fn every_account_has_a_nightly_rebuild_it_can_retime_or_disable_but_not_delete() {
    let s = Server::start().await;
    let q = "{ jobSchedules { id name kind cron utcOffset enabled builtin nextRunAt } }";
    let list = s.gql(q, json!({})).await["jobSchedules"].clone();
    let nightly = list[0].clone();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(nightly["kind"], "BUILD_PERSONAS");
    assert_eq!(nightly["cron"], "0 3 * * *");
    assert_eq!(nightly["utcOffset"], "+08:00");
    assert_eq!(nightly["enabled"], true);
    assert_eq!(nightly["builtin"], true);
    // 03:00 in China is 19:00 UTC, within the next day.
    let at = time(&nightly["nextRunAt"]);
    assert_eq!(at.format("%H:%M:%S").to_string(), "19:00:00");
    assert!(at > chrono::Utc::now() && at <= chrono::Utc::now() + chrono::Duration::days(1));
    let id = nightly["id"].clone();

    let del = s
        .err_as(
            Some(ADMIN_KEY),
            "mutation($id: ID!) { deleteJobSchedule(id: $id) }",
            json!({ "id": id }),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(del["errors"][0]["extensions"]["field"], "id");
    let rename = s
        .err_as(
            Some(ADMIN_KEY),
            UPDATE,
            json!({ "id": id, "i": { "name": "别的名字" } }),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(rename["errors"][0]["extensions"]["field"], "input.name");
    // Retimed to 05:00, then off.
    let later = s
        .gql(UPDATE, json!({ "id": id, "i": { "cron": "0 5 * * *" } }))
        .await["updateJobSchedule"]
        .clone();
    let at = time(&later["nextRunAt"]);
    assert_eq!(at.format("%H:%M").to_string(), "21:00", "{later}");
    let off = s
        .gql(UPDATE, json!({ "id": id, "i": { "enabled": false } }))
        .await["updateJobSchedule"]
        .clone();
    assert!(off["nextRunAt"].is_null(), "{off}");
    // Still there, still one; a new account gets its own.
    let list = s.gql(q, json!({})).await["jobSchedules"].clone();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["cron"], "0 5 * * *");
    let (_, other) = s.new_account("新品牌").await;
    let theirs = s.ok_as(&other, q, json!({})).await["jobSchedules"].clone();
    assert_eq!(theirs[0]["cron"], "0 3 * * *", "{theirs}");
    assert_eq!(theirs[0]["enabled"], true);
    assert_ne!(theirs[0]["id"], id);
}

#[tokio::test]
async fn accounts_of_an_earlier_release_get_the_nightly_rebuild_at_start() {
    let s = server().await;
    let (_, other) = s.new_account("老品牌").await;
    // As an earlier release left them: no recurring jobs at all.
    assert_eq!(s.sql_exec("DELETE FROM job_schedule").await, 2);
    assert_eq!(s.gql(LIST, json!({})).await["jobSchedules"], json!([]));
    // A process starting on this database (here a worker) migrates and gives
    // every account its built-in schedule, once.
    let mut worker = [s.spawn_worker(1)];
    tests::all_started(&mut worker, |i| s.worker_log(i), "worker started").await;
    assert_eq!(s.gql(LIST, json!({})).await["jobSchedules"], only_builtin());
    let theirs = s.ok_as(&other, LIST, json!({})).await;
    assert_eq!(theirs["jobSchedules"], only_builtin());
    let mut second = [s.spawn_worker(2)];
    tests::all_started(&mut second, |i| s.worker_log(i + 1), "worker started").await;
    assert_eq!(s.sql_count("SELECT COUNT(*) FROM job_schedule").await, 2);
}

/// A schedule on an IANA time zone follows its wall clock through daylight
/// saving; switching to a fixed offset (or back) moves the next run.
#[tokio::test]
async fn a_schedule_on_a_time_zone_keeps_its_local_time() {
    let s = Server::start().await;
    let q = "mutation($i: CreateJobScheduleInput!) { createJobSchedule(input: $i) { id cron utcOffset timeZone nextRunAt } }";
    let created = s
        .gql(
            q,
            json!({ "i": { "name": "柏林早报", "kind": "BUILD_PERSONAS", "cron": "0 9 * * *", "timeZone": "europe/berlin" } }),
        )
        .await["createJobSchedule"]
        .clone();
    assert_eq!(created["timeZone"], "Europe/Berlin", "{created}");
    let next = time(&created["nextRunAt"]);
    let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let local = next.with_timezone(&berlin);
    assert_eq!(
        local.format("%H:%M").to_string(),
        "09:00",
        "09:00 Berlin time whatever the season: {created}"
    );
    assert!(next > chrono::Utc::now() && next - chrono::Utc::now() <= chrono::TimeDelta::hours(24));
    use chrono::Offset as _;
    let offset_now = chrono::Utc::now()
        .with_timezone(&berlin)
        .offset()
        .fix()
        .local_minus_utc();
    let expected = if offset_now == 3600 {
        "+01:00"
    } else {
        "+02:00"
    };
    assert_eq!(created["utcOffset"], expected, "today's offset: {created}");

    // To a fixed clock: the zone is dropped and the hour reads on UTC+1.
    let upd = "mutation($id: ID!, $i: UpdateJobScheduleInput!) { updateJobSchedule(id: $id, input: $i) { utcOffset timeZone nextRunAt } }";
    let fixed = s
        .gql(
            upd,
            json!({ "id": created["id"], "i": { "utcOffset": "+01:00" } }),
        )
        .await["updateJobSchedule"]
        .clone();
    assert_eq!(fixed["timeZone"], Value::Null, "{fixed}");
    assert_eq!(fixed["utcOffset"], "+01:00");
    assert_eq!(
        time(&fixed["nextRunAt"]).format("%H:%M").to_string(),
        "08:00",
        "09:00 at UTC+1 is 08:00 UTC: {fixed}"
    );
    // And back to a zone.
    let zoned = s
        .gql(
            upd,
            json!({ "id": created["id"], "i": { "timeZone": "America/New_York", "cron": "0 9 1 * *" } }),
        )
        .await["updateJobSchedule"]
        .clone();
    assert_eq!(zoned["timeZone"], "America/New_York", "{zoned}");
    let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
    assert_eq!(
        time(&zoned["nextRunAt"])
            .with_timezone(&ny)
            .format("%H:%M")
            .to_string(),
        "09:00"
    );
    // Twenty first-of-the-months on New York's clock span both daylight
    // saving changes, whatever today is: always 09:00 there, two UTC hours.
    let up = s
        .gql(
            "query($id: ID!) { jobSchedule(id: $id) { upcoming(first: 20) } }",
            json!({ "id": created["id"] }),
        )
        .await["jobSchedule"]["upcoming"]
        .clone();
    let times: Vec<_> = up.as_array().unwrap().iter().map(time).collect();
    assert_eq!(times.len(), 20, "{up}");
    assert_eq!(times[0], time(&zoned["nextRunAt"]));
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{up}");
    assert!(
        times
            .iter()
            .all(|t| t.with_timezone(&ny).format("%H:%M").to_string() == "09:00"),
        "{up}"
    );
    let utc_hours: std::collections::BTreeSet<_> =
        times.iter().map(|t| t.format("%H").to_string()).collect();
    assert_eq!(utc_hours.len(), 2, "EST and EDT: {up}");
    s.err_as(
        Some(ADMIN_KEY),
        "query($id: ID!) { jobSchedule(id: $id) { upcoming(first: 21) } }",
        json!({ "id": created["id"] }),
        "BAD_USER_INPUT",
    )
    .await;
    let off = s
        .gql(
            "mutation($id: ID!) { updateJobSchedule(id: $id, input: { enabled: false }) { upcoming } }",
            json!({ "id": created["id"] }),
        )
        .await["updateJobSchedule"]["upcoming"]
        .clone();
    assert_eq!(off, json!([]), "a disabled schedule has no occurrences");
    // An edit of other fields keeps the zone.
    let renamed = s
        .gql(
            "mutation($id: ID!) { updateJobSchedule(id: $id, input: { name: \"纽约早报\" }) { timeZone } }",
            json!({ "id": created["id"] }),
        )
        .await["updateJobSchedule"]
        .clone();
    assert_eq!(renamed["timeZone"], "America/New_York");
}
