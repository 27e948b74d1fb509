//! `analyzeText` latency through the real API with the language models: a
//! one-text request and a 32-text request on an idle server, then one-text
//! requests while a whole-account re-analysis (`ANALYZE_TEXTS { reanalyze:
//! true }`, the encoder over N members × 3 messages, default 2,000) runs
//! in the same process. Integrations call `analyzeText` synchronously, so
//! what a bulk job does to its latency matters.
//!
//! `./target/debug/bench_analyze 2000`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use serde_json::{Value, json};
use tests::{Server, chat_text as text, eventually};

/// One `analyzeText` request of `n` texts from `from`: its latency in ms.
async fn analyze(s: &Server, from: usize, n: usize) -> f64 {
    let texts: Vec<String> = (from..from + n).map(text).collect();
    let t = Instant::now();
    let d = s
        .gql(
            "query($t: [String!]!) { analyzeText(texts: $t) { sentiment { score } } }",
            json!({ "t": texts }),
        )
        .await;
    assert_eq!(d["analyzeText"].as_array().unwrap().len(), n, "{d}");
    t.elapsed().as_secs_f64() * 1000.0
}

async fn status(s: &Server, id: &Value) -> Value {
    s.gql(
        "query($id: ID!) { job(id: $id) { status } }",
        json!({ "id": id }),
    )
    .await["job"]["status"]
        .clone()
}

/// p50, p95 and max of `ms`.
fn summary(ms: &mut [f64]) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95), ms[ms.len() - 1])
}

fn row(case: &str, ms: &mut [f64]) -> String {
    let n = ms.len();
    let (p50, p95, max) = summary(ms);
    format!("| {case} | {n} | {p50:.0} ms | {p95:.0} ms | {max:.0} ms |")
}

#[tokio::main]
async fn main() {
    let (s, n) = tests::chat_bench(2_000).await;
    let mut next = 1_000_000;
    // warm-up: the first request loads what is loaded lazily
    analyze(&s, next, 8).await;
    next += 8;
    let mut rows = Vec::new();
    for (case, size, times) in [("idle, 1 text", 1, 40), ("idle, 32 texts", 32, 10)] {
        let mut ms = Vec::new();
        for _ in 0..times {
            ms.push(analyze(&s, next, size).await);
            next += size;
        }
        rows.push(row(case, &mut ms));
    }

    s.import_chat(n, "o_a").await;
    let idle = eventually(3600, || async {
        let busy = s
            .sql_count("SELECT COUNT(*) FROM job_run WHERE status IN ('QUEUED', 'RUNNING')")
            .await;
        (busy == 0).then_some(())
    })
    .await;
    assert!(idle.is_some());

    let d = s
        .gql(
            "mutation { enqueueJob(input: { kind: ANALYZE_TEXTS, params: { reanalyze: true, buildPersonas: false } }) { id } }",
            json!({}),
        )
        .await;
    let id = d["enqueueJob"]["id"].clone();
    let running = eventually(120, || async {
        (status(&s, &id).await == "RUNNING").then_some(())
    })
    .await;
    assert!(running.is_some());
    let t = Instant::now();
    let mut ms = Vec::new();
    while status(&s, &id).await == "RUNNING" {
        ms.push(analyze(&s, next, 1).await);
        next += 1;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let job: Value = s.wait_job(&id, 60).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert!(!ms.is_empty(), "the job ended before a request was made");
    rows.push(row(
        &format!(
            "1 text, during a re-analysis of {} messages ({:.0} s)",
            job["result"]["messages"],
            t.elapsed().as_secs_f64()
        ),
        &mut ms,
    ));
    println!("| case | requests | p50 | p95 | max |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
