//! What the workers' check for queued jobs without a queue entry costs
//! (`worker::jobs::lost`): N QUEUED jobs that are due (default 100,000),
//! all with their entry but one in a thousand, through the real schema and
//! queue storage. Times every step (a page of 500 jobs: one range of
//! `ix_job_run_status_run_at`, one lookup of 500 keys in the queue, the
//! pushes) over a full pass that finds the lost ones, then a second pass
//! that finds none.
//!
//! `./target/debug/bench_lost 100000` (`LINGXI_TEST_BACKEND=postgres` for
//! PostgreSQL; `LINGXI_QUEUE_URL=redis://…` for the queue in Redis)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use entity::job_run;
use sea_orm::{ConnectionTrait, EntityTrait, Set};
use tests::{Options, Server};
use uuid::Uuid;
use worker::jobs::{Delivery, JobQueue, lost::LostEntries};

const LOST_EVERY: usize = 1_000;

/// One pass: steps until the check starts over. Per-step milliseconds and
/// the jobs queued again.
async fn pass(
    check: &mut LostEntries,
    db: &impl ConnectionTrait,
    queue: &JobQueue,
    n: usize,
) -> (Vec<f64>, usize) {
    let mut ms = Vec::new();
    let mut queued = 0;
    // A page of 500: n / 500 full pages, then the short one that wraps.
    for _ in 0..=n / 500 {
        let t = Instant::now();
        queued += check.step(db, queue, Duration::ZERO).await.unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (ms, queued)
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    let total: f64 = ms.iter().sum();
    format!(
        "{} steps, median {:.1} ms, max {:.1} ms, {:.2} s in all",
        ms.len(),
        ms[ms.len() / 2],
        ms[ms.len() - 1],
        total / 1000.0
    )
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let queue_url = std::env::var("LINGXI_QUEUE_URL").ok();
    let queue_name = format!("lingxi-bench-{}", Uuid::new_v4().simple());
    let mut extra_env = vec![("LINGXI_MODELS".into(), "off".into())];
    if let Some(url) = &queue_url {
        extra_env.push(("LINGXI_QUEUE_URL".into(), url.clone()));
        extra_env.push(("LINGXI_QUEUE_NAME".into(), queue_name.clone()));
    }
    // No workers: nothing else reads or delivers the queue.
    let s = Server::start_with(Options {
        extra_env,
        args: vec!["--no-worker".into()],
        ..Default::default()
    })
    .await;
    let storage = if queue_url.is_some() {
        "Redis"
    } else {
        tests::backend()
    };
    println!(
        "database: {}; queue: {storage}; queued jobs: {n}",
        tests::backend()
    );
    let mut cfg = worker::Config::from_env().unwrap();
    cfg.database_url = s.database_url.clone();
    cfg.queue_url = queue_url;
    cfg.queue_name = queue_name;
    let db = sea_orm::Database::connect(&s.database_url).await.unwrap();
    let queue = JobQueue::connect(&cfg, &db).await.unwrap();
    let account: Uuid = {
        let row = entity::account::Entity::find().one(&db).await.unwrap();
        row.unwrap().id
    };

    let t = Instant::now();
    let due = Utc::now() - chrono::Duration::hours(1);
    let mut lost = 0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        // Spread over the hour, as a backlog would be.
        let jobs: Vec<(usize, Uuid, chrono::DateTime<Utc>)> = chunk
            .iter()
            .map(|&i| {
                let run_at = due + chrono::Duration::milliseconds(i as i64);
                (i, Uuid::now_v7(), run_at)
            })
            .collect();
        let rows: Vec<job_run::ActiveModel> = jobs
            .iter()
            .map(|&(_, id, run_at)| job_run::ActiveModel {
                id: Set(id),
                account_id: Set(account),
                kind: Set("BUILD_PERSONAS".into()),
                status: Set("QUEUED".into()),
                params: Set(serde_json::json!({})),
                result: Set(None),
                error: Set(None),
                progress: Set(0.0),
                attempts: Set(0),
                run_at: Set(run_at),
                created_at: Set(due),
                started_at: Set(None),
                finished_at: Set(None),
                max_attempts: Set(3),
                schedule_key: Set(None),
                updated_at: Set(Some(due)),
                staged: Set(false),
                heartbeat_at: Set(None),
            })
            .collect();
        job_run::Entity::insert_many(rows).exec(&db).await.unwrap();
        for (i, job_id, run_at) in jobs {
            if (i + 1) % LOST_EVERY == 0 {
                lost += 1;
                continue;
            }
            queue
                .push(Delivery {
                    job_id,
                    attempts: 0,
                    run_at,
                })
                .await
                .unwrap();
        }
    }
    db.execute_unprepared(if tests::backend() == "postgres" {
        "ANALYZE job_run"
    } else {
        "ANALYZE"
    })
    .await
    .unwrap();
    println!(
        "loaded in {:.0} s: {n} due jobs, {lost} of them without an entry",
        t.elapsed().as_secs_f64()
    );

    let mut check = LostEntries::default();
    let (first, queued) = pass(&mut check, &db, &queue, n).await;
    assert_eq!(queued, lost, "every lost job found, once");
    println!("first pass (finds the {lost} lost): {}", summary(first));
    let (second, queued) = pass(&mut check, &db, &queue, n).await;
    assert_eq!(queued, 0, "nothing lost any more");
    println!("second pass (nothing lost): {}", summary(second));
    if let Some(url) = &cfg.queue_url {
        remove_redis_queue(url, &cfg.queue_name);
    }
}

/// Deletes the bench's queue from Redis (the database goes with the server).
fn remove_redis_queue(url: &str, name: &str) {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{name}:*"))
        .query(&mut con)
        .unwrap();
    for chunk in keys.chunks(1000) {
        redis::cmd("DEL").arg(chunk).exec(&mut con).unwrap();
    }
}
