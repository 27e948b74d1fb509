use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tests::{ADMIN_KEY, Options, RedisQueue, Server, eventually};
use tokio_tungstenite::tungstenite::Message;

const ENQUEUE: &str =
    "mutation($i: EnqueueJobInput!) { enqueueJob(input: $i) { id kind status attempts } }";
const JOB: &str = "query($id: ID!) { job(id: $id) { kind status progress result error attempts runAt startedAt finishedAt } }";

async fn job(s: &Server, id: &Value) -> Value {
    s.gql(JOB, json!({ "id": id })).await["job"].clone()
}

/// A small audience with known friend edges and texts.
async fn audience(s: &Server) {
    s.import(
        ADMIN_KEY,
        "importMembers",
        "CSV",
        "openid,nickname\no_a,阿\no_b,贝\no_c,晨\no_d,丁\n",
    )
    .await;
    s.import(
        ADMIN_KEY,
        "importRelations",
        "CSV",
        "openid,friendOpenid\no_a,o_b\no_b,o_c\no_c,o_d\no_a,x_outsider\n",
    )
    .await;
    let now = chrono::Utc::now();
    let msgs: Vec<String> = [
        ("o_a", "这款面霜很滋润，精华也好用，防晒不油腻"),
        ("o_a", "口红颜色很正，面膜补水效果明显"),
        ("o_b", "周末去三亚旅游，酒店海景太美了"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (o, t))| json!({ "openid": o, "text": t, "at": (now - chrono::Duration::hours(i as i64 + 1)).to_rfc3339() }).to_string())
    .collect();
    s.import(ADMIN_KEY, "importMessages", "JSONL", &msgs.join("\n"))
        .await;
}

const PERSONAS: &str = "{ members { edges { node { openid persona { interests { name weight } keywords activity reach degree influence updatedAt } } } } }";

fn persona<'a>(d: &'a Value, openid: &str) -> &'a Value {
    &d["members"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["openid"] == openid)
        .unwrap()["node"]["persona"]
}

/// Subscribes to `jobUpdated` for `id` and collects what it reports, in the
/// background, until the subscription completes (true) or goes quiet for
/// 120 s (false).
async fn follow_job(s: &Server, id: &Value) -> tokio::task::JoinHandle<(Vec<Value>, bool)> {
    let mut ws = s.ws(ADMIN_KEY).await;
    ws.send(Message::text(json!({ "id": "j", "type": "subscribe", "payload": { "query": "subscription($id: ID!) { jobUpdated(id: $id) { status progress attempts } }", "variables": { "id": id } } }).to_string())).await.unwrap();
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(Some(Ok(msg))) =
            tokio::time::timeout(Duration::from_secs(120), ws.next()).await
        {
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(&t).unwrap();
            match v["type"].as_str() {
                Some("next") => seen.push(v["payload"]["data"]["jobUpdated"].clone()),
                Some("complete") => return (seen, true),
                _ => {}
            }
        }
        (seen, false)
    })
}

#[tokio::test]
async fn build_personas_reports_progress_over_the_subscription_and_changes_personas() {
    let s = Server::start().await;
    audience(&s).await;
    let id = s.gql(ENQUEUE, json!({ "i": { "kind": "BUILD_PERSONAS", "runAt": (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339() } })).await["enqueueJob"]["id"].clone();

    let (statuses, completed) = follow_job(&s, &id).await.await.unwrap();
    assert!(
        completed,
        "the subscription completes after the final status: {statuses:?}"
    );
    assert_eq!(
        statuses.first().unwrap()["status"],
        "QUEUED",
        "{statuses:?}"
    );
    let last = statuses.last().unwrap();
    assert_eq!(last["status"], "SUCCEEDED", "{statuses:?}");
    assert_eq!(last["progress"], 1.0);
    assert_eq!(last["attempts"], 1);

    let j = job(&s, &id).await;
    assert_eq!(j["result"]["members"], 4);
    let d = s.gql(PERSONAS, json!({})).await;
    // Reach computed by hand: a–b, b–c, c–d, a–outsider.
    assert_eq!(persona(&d, "o_a")["degree"], 2);
    assert_eq!(persona(&d, "o_a")["reach"], 3); // b, outsider, c
    assert_eq!(persona(&d, "o_b")["reach"], 4); // a, c; then outsider (via a) and d (via c)
    assert_eq!(persona(&d, "o_d")["reach"], 2); // c, b
    let a = persona(&d, "o_a");
    assert_eq!(a["interests"][0]["name"], "美妆护肤", "{a}");
    assert!(
        a["keywords"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "面霜"),
        "{a}"
    );
    assert!(a["activity"].as_f64().unwrap() > persona(&d, "o_d")["activity"].as_f64().unwrap());
    assert_eq!(persona(&d, "o_b")["interests"][0]["name"], "旅游");

    // A refresh of a few members reads only their two-hop neighbourhood and
    // must agree with the full build (influence is kept from it).
    let ids = s
        .gql("{ members { edges { node { id openid } } } }", json!({}))
        .await;
    let pick: Vec<Value> = ids["members"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["openid"] == "o_b" || e["node"]["openid"] == "o_d")
        .map(|e| e["node"]["id"].clone())
        .collect();
    let id = s
        .gql(
            ENQUEUE,
            json!({ "i": { "kind": "BUILD_PERSONAS", "params": { "memberIds": pick } } }),
        )
        .await["enqueueJob"]["id"]
        .clone();
    assert_eq!(s.wait_job(&id, 30).await["status"], "SUCCEEDED");
    let again = s.gql(PERSONAS, json!({})).await;
    for o in ["o_b", "o_d"] {
        for k in ["degree", "reach", "influence"] {
            assert_eq!(persona(&again, o)[k], persona(&d, o)[k], "{o} {k}");
        }
        assert_ne!(persona(&again, o)["updatedAt"], persona(&d, o)["updatedAt"]);
    }
}

#[tokio::test]
async fn bad_job_input_is_bad_user_input_and_queues_nothing() {
    let s = Server::start().await;
    let body = s
        .err_as(
            Some(ADMIN_KEY),
            ENQUEUE,
            json!({ "i": { "kind": "BUILD_PERSONAS", "params": { "colour": "red" } } }),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["field"],
        "input.params.colour"
    );
    s.err_as(
        Some(ADMIN_KEY),
        ENQUEUE,
        json!({ "i": { "kind": "BUILD_PERSONAS", "params": { "memberIds": ["x"] } } }),
        "BAD_USER_INPUT",
    )
    .await;
    s.err_as(
        Some(ADMIN_KEY),
        ENQUEUE,
        json!({ "i": { "kind": "BUILD_PERSONAS", "params": [1, 2] } }),
        "BAD_USER_INPUT",
    )
    .await;
    s.err_as(
        Some(ADMIN_KEY),
        ENQUEUE,
        json!({ "i": { "kind": "MAKE_COFFEE" } }),
        "BAD_USER_INPUT",
    )
    .await;
    s.err_as(
        Some(ADMIN_KEY),
        ENQUEUE,
        json!({ "i": { "kind": "BUILD_PERSONAS", "maxAttempts": 0 } }),
        "BAD_USER_INPUT",
    )
    .await;
    let integration = s.new_key(ADMIN_KEY, "INTEGRATION").await;
    s.err_as(
        Some(&integration),
        ENQUEUE,
        json!({ "i": { "kind": "BUILD_PERSONAS" } }),
        "FORBIDDEN",
    )
    .await;
    // Only the nightly rebuild the scheduler queued exists.
    let d = s
        .gql(
            "{ jobs { totalCount edges { node { runAt } } } }",
            json!({}),
        )
        .await;
    assert!(d["jobs"]["totalCount"].as_i64().unwrap() <= 1, "{d}");
}

#[tokio::test]
async fn a_cancelled_job_never_runs_and_a_delayed_one_waits_for_its_time() {
    cancelled_and_delayed_jobs(Vec::new()).await;
}

#[tokio::test]
async fn with_the_queue_in_redis_a_delayed_job_waits_for_its_time() {
    let Some(redis) = RedisQueue::new("with_the_queue_in_redis_a_delayed_job_waits_for_its_time")
    else {
        return;
    };
    cancelled_and_delayed_jobs(redis.env()).await;
}

async fn cancelled_and_delayed_jobs(extra_env: Vec<(String, String)>) {
    let s = Server::start_with(Options {
        extra_env,
        ..Default::default()
    })
    .await;
    audience(&s).await;
    let later = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
    let cancel = s
        .gql(
            ENQUEUE,
            json!({ "i": { "kind": "BUILD_PERSONAS", "runAt": later } }),
        )
        .await["enqueueJob"]["id"]
        .clone();
    let delayed = s
        .gql(
            ENQUEUE,
            json!({ "i": { "kind": "BUILD_PERSONAS", "runAt": later } }),
        )
        .await["enqueueJob"]["id"]
        .clone();
    let c = s
        .gql(
            "mutation($id: ID!) { cancelJob(id: $id) { status } }",
            json!({ "id": cancel }),
        )
        .await;
    assert_eq!(c["cancelJob"]["status"], "CANCELLED");
    s.err_as(
        Some(ADMIN_KEY),
        "mutation($id: ID!) { cancelJob(id: $id) { status } }",
        json!({ "id": cancel }),
        "BAD_USER_INPUT",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        job(&s, &delayed).await["status"],
        "QUEUED",
        "runs no earlier than runAt"
    );
    let done = s.wait_job(&delayed, 30).await;
    assert_eq!(done["status"], "SUCCEEDED");
    let started = job(&s, &delayed).await;
    let at = |field: &str| chrono::DateTime::parse_from_rfc3339(started[field].as_str().unwrap());
    assert!(
        at("startedAt").unwrap() >= at("runAt").unwrap(),
        "{started}"
    );
    let c = job(&s, &cancel).await;
    assert_eq!(c["status"], "CANCELLED");
    assert_eq!(c["attempts"], 0, "a cancelled job never starts");
}

/// A job written in the transaction of the change that calls for it (an
/// erasure's retrain, a change of head's re-analysis) is handed to the
/// queue after the commit. One whose process died in between stays
/// `staged` in `job_run`: a worker hands it over.
#[tokio::test]
async fn a_staged_job_its_process_never_queued_is_queued_by_a_worker() {
    let (s, id) = queued_for_later(Vec::new()).await;
    // Staged, due long ago and without a queue entry: what a process that
    // died after its commit leaves.
    let long_ago = "'2000-01-01 00:00:00+00:00'";
    let staged = s
        .sql_exec(&format!(
            "UPDATE job_run SET staged = TRUE, run_at = {long_ago}, created_at = {long_ago} \
             WHERE kind = 'BUILD_PERSONAS' AND status = 'QUEUED'"
        ))
        .await;
    assert_eq!(staged, 1);
    remove_entry(&s, &id).await;
    let done = s.wait_job(&id, 90).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(done["result"]["members"], 4, "{done}");
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM job_run WHERE staged = TRUE")
            .await,
        0
    );
}

/// A QUEUED job whose queue entry is gone (its process died between
/// writing the job and queueing it; a Redis without persistence restarted)
/// is queued again by a worker, and runs once.
#[tokio::test]
async fn a_queued_job_whose_queue_entry_was_lost_runs() {
    let (s, id) = queued_for_later(Vec::new()).await;
    remove_entry(&s, &id).await;
    runs_once_due(&s, &id).await;
}

/// Removes the queue entry of job `id`'s first delivery (SQL storages).
async fn remove_entry(s: &Server, id: &Value) {
    let entries = if tests::backend() == "postgres" {
        "apalis.jobs"
    } else {
        "Jobs"
    };
    // An entry's key is its job's id and its attempts so far.
    let removed = s
        .sql_exec(&format!(
            "DELETE FROM {entries} WHERE idempotency_key = '{}/0'",
            id.as_str().unwrap()
        ))
        .await;
    assert_eq!(removed, 1, "the job's one entry");
}

#[tokio::test]
async fn with_the_queue_in_redis_a_restart_that_lost_the_queue_loses_no_job() {
    let Some(redis) =
        RedisQueue::new("with_the_queue_in_redis_a_restart_that_lost_the_queue_loses_no_job")
    else {
        return;
    };
    let (s, id) = queued_for_later(redis.env()).await;
    // What a restart of a Redis that keeps nothing on disk leaves of the
    // queue: nothing (the workers register again).
    let keys: Vec<String> = redis.cmd(redis::cmd("KEYS").arg(redis.key("*")));
    assert!(!keys.is_empty());
    redis.cmd::<()>(redis::cmd("DEL").arg(&keys));
    runs_once_due(&s, &id).await;
}

/// A server with an audience and a BUILD_PERSONAS job queued for in an hour.
async fn queued_for_later(extra_env: Vec<(String, String)>) -> (Server, Value) {
    let s = Server::start_with(Options {
        extra_env,
        ..Default::default()
    })
    .await;
    audience(&s).await;
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let id = s
        .gql(
            ENQUEUE,
            json!({ "i": { "kind": "BUILD_PERSONAS", "runAt": later } }),
        )
        .await["enqueueJob"]["id"]
        .clone();
    (s, id)
}

/// Makes job `id` due long ago (its queue entry gone, nothing would deliver
/// it) and expects it to run, once.
async fn runs_once_due(s: &Server, id: &Value) {
    let due = s
        .sql_exec(
            "UPDATE job_run SET run_at = '2000-01-01 00:00:00+00:00' \
             WHERE kind = 'BUILD_PERSONAS' AND status = 'QUEUED'",
        )
        .await;
    assert_eq!(due, 1);
    let done = s.wait_job(id, 90).await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}\n{}", s.log());
    assert_eq!(done["attempts"], 1, "{done}");
    assert_eq!(done["result"]["members"], 4, "{done}");
    assert!(
        s.log().contains("queued again"),
        "the worker says what it did:\n{}",
        s.log()
    );
}

#[tokio::test]
async fn a_new_message_reaches_the_persona_within_seconds() {
    let s = Server::start().await;
    s.import(ADMIN_KEY, "importMembers", "CSV", "openid\no_fresh\n")
        .await;
    let msg = json!({ "openid": "o_fresh", "kind": "moment", "text": "新买的扫地机器人太好用了，沙发底下都能扫干净", "at": chrono::Utc::now().to_rfc3339() });
    s.import(ADMIN_KEY, "importMessages", "JSONL", &msg.to_string())
        .await;
    let p = eventually(20, || async {
        let d = s
            .gql(
                "{ members { edges { node { persona { keywords interests { name } } } } } }",
                json!({}),
            )
            .await;
        let p = d["members"]["edges"][0]["node"]["persona"].clone();
        p["keywords"]
            .as_array()
            .is_some_and(|k| k.iter().any(|w| w == "扫地机器人"))
            .then_some(p)
    })
    .await;
    let p = p.unwrap_or_else(|| panic!("the persona did not pick up the message:\n{}", s.log()));
    assert_eq!(p["interests"][0]["name"], "家居", "{p}");
}

/// Without language models, analysis fails permanently (no retries) and says how to fix it.
#[tokio::test]
async fn analysis_without_models_fails_permanently_with_the_fix() {
    let s = Server::start_with(Options {
        extra_env: vec![("LINGXI_MODELS".into(), "off".into())],
        ..Default::default()
    })
    .await;
    let id = s
        .gql(
            ENQUEUE,
            json!({ "i": { "kind": "ANALYZE_TEXTS", "maxAttempts": 3 } }),
        )
        .await["enqueueJob"]["id"]
        .clone();
    let j = s.wait_job(&id, 20).await;
    assert_eq!(j["status"], "FAILED");
    assert_eq!(j["attempts"], 1, "permanent failures are not retried");
    assert!(j["error"].as_str().unwrap().contains("make setup"), "{j}");
}

/// A worker killed mid-job (SIGKILL): after a restart the job completes and
/// its effects are not doubled.
#[tokio::test]
async fn a_killed_worker_job_completes_after_restart_without_doubled_effects() {
    killed_worker_job_completes_after_restart(Vec::new(), None).await;
}

#[tokio::test]
async fn with_the_queue_in_redis_a_killed_worker_job_completes_after_restart() {
    let Some(redis) =
        RedisQueue::new("with_the_queue_in_redis_a_killed_worker_job_completes_after_restart")
    else {
        return;
    };
    killed_worker_job_completes_after_restart(redis.env(), None).await;
}

/// The worker running a job dies while a Redis without persistence restarts:
/// nothing in the queue hands the job on, and the job's heartbeat stops. A
/// worker queues it again once the heartbeat is overdue.
#[tokio::test]
async fn with_the_queue_in_redis_a_job_whose_worker_died_while_redis_lost_the_queue_completes() {
    let Some(redis) = RedisQueue::new(
        "with_the_queue_in_redis_a_job_whose_worker_died_while_redis_lost_the_queue_completes",
    ) else {
        return;
    };
    let mut env = redis.env();
    env.push(("LINGXI_JOB_HEARTBEAT_TIMEOUT_SECS".into(), "8".into()));
    killed_worker_job_completes_after_restart(env, Some(&redis)).await;
}

/// `wipe`: the Redis whose keys are all deleted once the worker is dead.
async fn killed_worker_job_completes_after_restart(
    extra_env: Vec<(String, String)>,
    wipe: Option<&RedisQueue>,
) {
    let s = Server::start_with(Options {
        args: vec!["--no-worker".into()],
        extra_env,
        ..Default::default()
    })
    .await;
    let n = 12_000;
    let csv: String = std::iter::once("openid,city\n".to_owned())
        .chain((0..n).map(|i| format!("o_k{i:05},上海\n")))
        .collect();
    s.import(ADMIN_KEY, "importMembers", "CSV", &csv).await;
    let rel: String = std::iter::once("openid,friendOpenid\n".to_owned())
        .chain((0..n).map(|i| format!("o_k{i:05},o_k{:05}\n", (i * 7 + 1) % n)))
        .collect();
    s.import(ADMIN_KEY, "importRelations", "CSV", &rel).await;
    let id = s
        .gql(ENQUEUE, json!({ "i": { "kind": "BUILD_PERSONAS" } }))
        .await["enqueueJob"]["id"]
        .clone();
    // The API process runs no worker: what the subscription reports was
    // written by the worker processes.
    let followed = follow_job(&s, &id).await;

    let mut w1 = s.spawn_worker(1);
    let running = eventually(60, || async {
        let j = job(&s, &id).await;
        (j["status"] == "RUNNING" && j["progress"].as_f64().unwrap_or(0.0) > 0.0).then_some(j)
    })
    .await;
    assert!(
        running.is_some(),
        "the worker did not start the job:\n{}",
        s.worker_log(1)
    );
    // (The import's own refresh of the new members may be running too.)
    assert_eq!(
        s.sql_count(
            "SELECT COUNT(*) FROM job_run WHERE status = 'RUNNING' AND heartbeat_at IS NULL"
        )
        .await,
        0,
        "a running job's process says it is alive"
    );
    w1.kill().unwrap(); // SIGKILL
    w1.wait().unwrap();
    assert_eq!(
        job(&s, &id).await["status"],
        "RUNNING",
        "a dead worker leaves the job behind"
    );
    if let Some(r) = wipe {
        let keys: Vec<String> = r.cmd(redis::cmd("KEYS").arg(r.key("*")));
        assert!(!keys.is_empty());
        r.cmd::<()>(redis::cmd("DEL").arg(&keys));
    }

    let mut w2 = s.spawn_worker(2);
    let j = eventually(90, || async {
        let j = job(&s, &id).await;
        (j["status"] == "SUCCEEDED").then_some(j)
    })
    .await;
    let _ = w2.kill();
    let _ = w2.wait();
    let j = j.unwrap_or_else(|| {
        panic!(
            "job did not complete after restart:\n{}\n{}",
            s.worker_log(2),
            s.worker_log(1)
        )
    });
    assert_eq!(j["attempts"], 2, "{j}");
    assert_eq!(j["result"]["members"], n);
    let (seen, completed) = followed.await.unwrap();
    assert!(completed, "{seen:?}");
    let first_run = seen
        .iter()
        .position(|u| u["status"] == "RUNNING" && u["attempts"] == 1);
    let second_run = seen
        .iter()
        .position(|u| u["status"] == "RUNNING" && u["attempts"] == 2);
    assert!(
        matches!((first_run, second_run), (Some(a), Some(b)) if a < b),
        "the subscription saw both attempts, in order: {seen:?}"
    );
    let last = seen.last().unwrap();
    assert_eq!(
        (&last["status"], &last["attempts"]),
        (&json!("SUCCEEDED"), &json!(2))
    );
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM persona").await,
        n as i64,
        "one persona per member, not doubled"
    );
}

/// `LINGXI_QUEUE_URL` puts the queue in Redis; the jobs stay in the database.
#[tokio::test]
async fn with_the_queue_in_redis_a_job_succeeds() {
    let Some(redis) = RedisQueue::new("with_the_queue_in_redis_a_job_succeeds") else {
        return;
    };
    let (_s, j) = personas_built_on(redis.env()).await;
    assert_eq!(j["result"]["members"], 4);
    // apalis acknowledges (moves the task to `done`) just after our handler
    // has recorded SUCCEEDED, so give it a moment.
    let acked = eventually(10, || async {
        let done: i64 = redis.cmd(redis::cmd("SCARD").arg(redis.key("done")));
        (done >= 1).then_some(())
    })
    .await;
    assert!(acked.is_some(), "the job went through Redis");
}

/// A Redis worker that lost its registration (as when another worker took it
/// for dead) starts again under a new name and keeps taking jobs.
#[tokio::test]
async fn with_the_queue_in_redis_a_worker_that_lost_its_registration_keeps_working() {
    let Some(redis) = RedisQueue::new(
        "with_the_queue_in_redis_a_worker_that_lost_its_registration_keeps_working",
    ) else {
        return;
    };
    let s = Server::start_with(Options {
        extra_env: redis.env(),
        ..Default::default()
    })
    .await;
    let workers = redis.key("workers");
    let registered = eventually(10, || async {
        (redis.cmd::<i64>(redis::cmd("ZCARD").arg(&workers)) > 0).then_some(())
    })
    .await;
    assert!(registered.is_some(), "no worker registered:\n{}", s.log());
    redis.cmd::<()>(redis::cmd("DEL").arg(&workers));
    let restarted = eventually(10, || async {
        s.log()
            .contains("job worker failed; restarting")
            .then_some(())
    })
    .await;
    assert!(
        restarted.is_some(),
        "the worker did not restart:\n{}",
        s.log()
    );
    let id = s
        .gql(ENQUEUE, json!({ "i": { "kind": "BUILD_PERSONAS" } }))
        .await["enqueueJob"]["id"]
        .clone();
    assert_eq!(s.wait_job(&id, 20).await["status"], "SUCCEEDED");
}

/// A server with `extra_env` that has built the personas of [`audience`];
/// returns it and the finished job (with its `id`).
async fn personas_built_on(extra_env: Vec<(String, String)>) -> (Server, Value) {
    let s = Server::start_with(Options {
        extra_env,
        ..Default::default()
    })
    .await;
    audience(&s).await;
    let id = s
        .gql(ENQUEUE, json!({ "i": { "kind": "BUILD_PERSONAS" } }))
        .await["enqueueJob"]["id"]
        .clone();
    let mut j = s.wait_job(&id, 60).await;
    assert_eq!(j["status"], "SUCCEEDED", "{j}");
    j["id"] = id;
    (s, j)
}

/// Queue entries in state Done: apalis's table (SQLite / PostgreSQL) or its
/// per-task meta hashes in Redis.
async fn done_entries(s: &Server, redis: Option<&RedisQueue>) -> i64 {
    match redis {
        Some(r) => {
            let keys: Vec<String> = r.cmd(redis::cmd("KEYS").arg(format!("{}:*", r.key("meta"))));
            keys.iter()
                .filter(|k| {
                    let status: Option<String> = r.cmd(redis::cmd("HGET").arg(k).arg("status"));
                    status.as_deref() == Some("Done")
                })
                .count() as i64
        }
        None if tests::backend() == "postgres" => {
            s.sql_count("SELECT COUNT(*) FROM apalis.jobs WHERE status = 'Done'")
                .await
        }
        None => {
            s.sql_count("SELECT COUNT(*) FROM Jobs WHERE status = 'Done'")
                .await
        }
    }
}

async fn finished_entries_are_purged(redis: Option<&RedisQueue>) {
    let mut extra_env = redis.map(RedisQueue::env).unwrap_or_default();
    extra_env.push(("LINGXI_QUEUE_KEEP_FINISHED_SECS".into(), "6".into()));
    let (s, built) = personas_built_on(extra_env).await;
    let id = built["id"].clone();
    // Kept for the retention period…
    let kept = eventually(5, || async {
        let n = done_entries(&s, redis).await;
        (n > 0).then_some(n)
    })
    .await;
    assert!(kept.is_some(), "a finished entry stays for 6 s");
    // …then removed, while the job's own record stays.
    let purged = eventually(40, || async {
        (done_entries(&s, redis).await == 0).then_some(())
    })
    .await;
    assert!(purged.is_some(), "finished entries are purged after 6 s");
    assert_eq!(job(&s, &id).await["status"], "SUCCEEDED");
}

#[tokio::test]
async fn finished_queue_entries_are_purged_after_the_retention_period() {
    finished_entries_are_purged(None).await;
}

#[tokio::test]
async fn with_the_queue_in_redis_finished_entries_are_purged() {
    let Some(redis) = RedisQueue::new("with_the_queue_in_redis_finished_entries_are_purged") else {
        return;
    };
    finished_entries_are_purged(Some(&redis)).await;
}

/// Workers started at once on a database no process has opened yet (a fresh
/// scale-out install) all migrate it and start: the schema migrations and the
/// queue's set-up run one process at a time instead of failing on each
/// other's DDL.
#[tokio::test]
async fn workers_starting_together_on_a_fresh_database_all_start() {
    let db = tests::FreshDatabase::new().await;
    let mut workers: Vec<_> = (1..=3).map(|i| db.spawn_worker(i)).collect();
    tests::all_started(&mut workers, |i| db.worker_log(i), "worker started").await;
}

/// `/metrics` shows the job backlog of every process: waiting and running
/// jobs per kind, and how long the oldest due one has waited, so a stalled
/// queue shows as a growing age.
#[tokio::test]
async fn metrics_show_the_job_backlog_and_a_stalled_job() {
    let s = Server::start_with(Options {
        extra_env: vec![("LINGXI_MODELS".into(), "off".into())],
        ..Default::default()
    })
    .await;
    const QUEUED: &str = r#"lingxi_jobs{kind="INDEX_PERSONAS",status="QUEUED"}"#;
    const OLDEST: &str = r#"lingxi_job_oldest_due_seconds{kind="INDEX_PERSONAS"}"#;
    let m = s.metrics().await;
    assert_eq!(tests::metric(&m, "lingxi_jobs_up"), Some(1.0), "{m}");
    assert_eq!(
        tests::metric(&m, QUEUED),
        Some(0.0),
        "every kind is listed: {m}"
    );
    assert_eq!(
        tests::metric(
            &m,
            r#"lingxi_jobs{kind="RETRAIN_SENTIMENT",status="RUNNING"}"#
        ),
        Some(0.0)
    );

    // A job for later waits but is not due.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    s.gql(
        ENQUEUE,
        json!({ "i": { "kind": "INDEX_PERSONAS", "runAt": later } }),
    )
    .await;
    let m = s.metrics().await;
    assert_eq!(tests::metric(&m, QUEUED), Some(1.0), "{m}");
    assert_eq!(tests::metric(&m, OLDEST), Some(0.0), "{m}");

    // A job that ran, put back to QUEUED behind the queue's back: its
    // entry is there, finished, so nothing delivers it again (a stall as
    // when the workers are down).
    let id = s
        .gql(ENQUEUE, json!({ "i": { "kind": "INDEX_PERSONAS" } }))
        .await["enqueueJob"]["id"]
        .clone();
    assert_eq!(s.wait_job(&id, 60).await["status"], "SUCCEEDED");
    s.sql_exec(
        "UPDATE job_run SET status = 'QUEUED' WHERE kind = 'INDEX_PERSONAS' AND status = 'SUCCEEDED'",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let m = s.metrics().await;
    assert_eq!(tests::metric(&m, QUEUED), Some(2.0), "{m}");
    let waited = tests::metric(&m, OLDEST).unwrap();
    assert!(
        (1.0..600.0).contains(&waited),
        "the stalled job has waited since it was due: {waited}"
    );
}

/// Members touched while their refresh waits for a worker join that
/// refresh: one job for all of them, not one per flush (two could start
/// together on the same members, in this process or another).
/// An API process that runs no jobs: what it queues stays queued.
fn no_worker() -> Options {
    Options {
        args: vec!["--no-worker".into()],
        ..Default::default()
    }
}

/// How many members a refresh job names (0 for a pass over the account).
fn members_of(j: &Value) -> usize {
    j["params"]["memberIds"].as_array().map_or(0, Vec::len)
}

/// The persona refreshes (of servers without models) waiting for a worker.
async fn queued_refreshes(s: &Server) -> Vec<Value> {
    s.gql(
        "{ jobs(kind: BUILD_PERSONAS, status: QUEUED) { nodes { id params } } }",
        json!({}),
    )
    .await["jobs"]["nodes"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn members_touched_while_their_refresh_waits_join_it() {
    let s = Server::start_with(no_worker()).await;
    let queued = || queued_refreshes(&s);
    // Every member `openids` adds is in the one queued refresh, once the
    // flush has run.
    let join = |openids: &'static str, total: usize| {
        let (s, queued) = (&s, &queued);
        async move {
            s.import(
                ADMIN_KEY,
                "importMembers",
                "CSV",
                &format!("openid\n{openids}"),
            )
            .await;
            let grown = eventually(30, || async {
                let q = queued().await;
                (q.iter().map(members_of).sum::<usize>() == total).then_some(q)
            })
            .await;
            let q = grown.unwrap_or(queued().await);
            assert_eq!(q.len(), 1, "one refresh for all {total}: {q:?}");
            assert_eq!(members_of(&q[0]), total, "{q:?}");
        }
    };
    join("o_j1\no_j2\n", 2).await;
    // a new member, again into the job as that addition left it, then one
    // already in the refresh, in later flushes
    join("o_j3\n", 3).await;
    join("o_j4\n", 4).await;
    s.import(
        ADMIN_KEY,
        "importEvents",
        "CSV",
        "openid,type,at\no_j1,click,2026-11-21T08:00:00Z\n",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let q = queued().await;
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(members_of(&q[0]), 4, "{q:?}");

    // A worker runs it with the params as they are when it starts.
    let mut w = s.spawn_worker(1);
    let j = s.wait_job(&q[0]["id"], 60).await;
    let _ = w.kill();
    let _ = w.wait();
    assert_eq!(j["status"], "SUCCEEDED", "{j}\n{}", s.worker_log(1));
    let built = s.sql_count("SELECT COUNT(*) FROM persona").await;
    assert_eq!(built, 4);
}

/// Members whose refresh waits for the account's running one are kept in
/// the database, not in the API process: a process stopped (SIGKILL)
/// while they wait leaves them to the next one, which queues their refresh.
#[tokio::test]
async fn members_waiting_for_a_refresh_outlive_their_process() {
    let mut a = Server::start_with(no_worker()).await;
    a.import(ADMIN_KEY, "importMembers", "CSV", "openid\no_h1\no_h2\n")
        .await;
    let first = eventually(30, || async { queued_refreshes(&a).await.pop() })
        .await
        .expect("a refresh of the imported members");
    let members = first["params"]["memberIds"].as_array().unwrap().clone();
    assert_eq!(members.len(), 2, "{first}");
    // a worker takes it, as far as the API can tell
    let claimed = a
        .sql_exec("UPDATE job_run SET status = 'RUNNING' WHERE status = 'QUEUED'")
        .await;
    assert_eq!(claimed, 1);
    a.import(
        ADMIN_KEY,
        "importEvents",
        "CSV",
        "openid,type,at\no_h1,click,2026-11-21T08:00:00Z\n",
    )
    .await;
    // o_h1 waits for the running refresh: stored, not queued
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(queued_refreshes(&a).await, Vec::<Value>::new());
    assert_eq!(a.sql_count("SELECT COUNT(*) FROM member_touch").await, 1);

    a.kill();
    // the refresh finishes while no API process runs
    let done = a
        .sql_exec("UPDATE job_run SET status = 'SUCCEEDED' WHERE status = 'RUNNING'")
        .await;
    assert_eq!(done, 1);
    let b = Server::start_with(Options {
        database_url: Some(a.database_url.clone()),
        ..no_worker()
    })
    .await;
    let next = eventually(30, || async { queued_refreshes(&b).await.pop() })
        .await
        .unwrap_or_else(|| panic!("no refresh after the restart:\n{}", b.log()));
    let ids = next["params"]["memberIds"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "{next}");
    assert!(members.contains(&ids[0]), "{next}");
    assert_eq!(b.sql_count("SELECT COUNT(*) FROM member_touch").await, 0);
}

/// Importing a file again, as it is stored, refreshes no persona (members
/// are not written; events, messages and friend edges are deduplicated);
/// a member whose data changed is refreshed alone.
#[tokio::test]
async fn imports_refresh_only_the_members_they_changed() {
    let s = Server::start_with(no_worker()).await;
    let files = [
        (
            "importMembers",
            "CSV",
            "openid,city,age,tags,subscribedAt\n\
             o_r1,上海,28,护肤|新客,2026-11-01T08:00:00Z\n\
             o_r2,北京,35,数码,2026-11-02T08:00:00Z\n",
            2,
        ),
        (
            "importEvents",
            "CSV",
            "openid,type,at,value\no_r1,purchase,2026-11-03T08:00:00Z,199\n",
            1,
        ),
        (
            "importMessages",
            "JSONL",
            r#"{"openid":"o_r2","text":"面霜很好用","at":"2026-11-03T09:00:00Z"}"#,
            1,
        ),
        (
            "importRelations",
            "CSV",
            "openid,friendOpenid\no_r1,o_r2\n",
            1,
        ),
    ];
    for (what, format, data, rows) in files {
        let r = s.import(ADMIN_KEY, what, format, data).await;
        assert_eq!(r["accepted"], rows, "{what}: {r}");
    }
    let both = |q: &Vec<Value>| q.iter().any(|j| members_of(j) == 2);
    let first = eventually(30, || async {
        let q = queued_refreshes(&s).await;
        both(&q).then_some(q)
    })
    .await
    .expect("a refresh of the imported members");
    assert_eq!(first.len(), 1, "{first:?}");
    // done, as far as the API can tell: a later touch needs a job of its own
    s.sql_exec("UPDATE job_run SET status = 'SUCCEEDED' WHERE status = 'QUEUED'")
        .await;

    for (what, format, data, rows) in files {
        let r = s.import(ADMIN_KEY, what, format, data).await;
        assert_eq!(r["accepted"], rows, "{what} again: {r}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(queued_refreshes(&s).await, Vec::<Value>::new());
    assert_eq!(s.sql_count("SELECT COUNT(*) FROM member_touch").await, 0);

    s.import(
        ADMIN_KEY,
        "importMembers",
        "CSV",
        "openid,city\no_r1,上海\no_r2,杭州\n",
    )
    .await;
    let next = eventually(30, || async { queued_refreshes(&s).await.pop() })
        .await
        .expect("a refresh of the changed member");
    let members = s
        .gql(
            "{ members { edges { node { id openid city } } } }",
            json!({}),
        )
        .await;
    let r2 = members["members"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["openid"] == "o_r2")
        .unwrap()["node"]
        .clone();
    assert_eq!(r2["city"], "杭州");
    assert_eq!(next["params"]["memberIds"], json!([r2["id"]]), "{next}");
}

/// Two API processes on one database, each importing members of the same
/// account at once: the touches of both become one refresh.
#[tokio::test]
async fn two_processes_touching_one_account_queue_one_refresh() {
    let a = Server::start_with(no_worker()).await;
    let b = Server::start_with(Options {
        database_url: Some(a.database_url.clone()),
        ..no_worker()
    })
    .await;
    for round in 0..3 {
        let csv_a = format!("openid\no_a{round}_1\no_a{round}_2\n");
        let csv_b = format!("openid\no_b{round}_1\no_b{round}_2\n");
        let (ra, rb) = tokio::join!(
            a.import(ADMIN_KEY, "importMembers", "CSV", &csv_a),
            b.import(ADMIN_KEY, "importMembers", "CSV", &csv_b)
        );
        assert_eq!(
            (ra["accepted"].clone(), rb["accepted"].clone()),
            (json!(2), json!(2))
        );
    }
    let total = |q: &Vec<Value>| q.iter().map(members_of).sum::<usize>();
    let q = eventually(30, || async {
        let q = queued_refreshes(&a).await;
        (total(&q) == 12).then_some(q)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "members missing from the refreshes:\n{}\n{}",
            a.log(),
            b.log()
        )
    });
    assert_eq!(q.len(), 1, "one refresh for both processes' members: {q:?}");
    assert_eq!(a.sql_count("SELECT COUNT(*) FROM member_touch").await, 0);
}
