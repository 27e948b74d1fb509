//! Re-scoring an account's messages after a change of sentiment head: the
//! head alone over the vectors analysis stored (`ANALYZE_TEXTS { stale:
//! true }`), against a full pass through the encoder (`reanalyze: true`),
//! on N members with 3 messages each (default 2,000), through the real
//! API with the language models.
//!
//! `./target/debug/bench_rescore 2000` (`LINGXI_TEST_BACKEND=postgres` for
//! PostgreSQL)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use serde_json::{Value, json};
use tests::{Server, eventually};

async fn run(s: &Server, params: &str) -> (Value, f64) {
    let t = Instant::now();
    let d = s
        .gql(
            &format!("mutation {{ enqueueJob(input: {{ kind: ANALYZE_TEXTS, params: {params} }}) {{ id }} }}"),
            json!({}),
        )
        .await;
    let j = s.wait_job(&d["enqueueJob"]["id"], 3600).await;
    assert_eq!(j["status"], "SUCCEEDED", "{j}");
    (j["result"].clone(), t.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let (s, n) = tests::chat_bench(2_000).await;
    s.import_chat(n, "o_r").await;
    // The imports' own analysis first (the encoder pass that stores what the head reads).
    let t = Instant::now();
    let idle = eventually(3600, || async {
        let busy = s
            .sql_count("SELECT COUNT(*) FROM job_run WHERE status IN ('QUEUED', 'RUNNING')")
            .await;
        let left = s
            .sql_count("SELECT COUNT(*) FROM message WHERE analyzed_at IS NULL")
            .await;
        (busy == 0 && left == 0).then_some(())
    })
    .await;
    assert!(idle.is_some());
    println!(
        "imported messages analysed (and personas refreshed) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    for (case, params) in [
        (
            "after a change of head: the head alone",
            "{ stale: true, buildPersonas: false }",
        ),
        (
            "reanalyze: the encoder again",
            "{ reanalyze: true, buildPersonas: false }",
        ),
    ] {
        let stale = s
            .sql_exec("UPDATE message SET sentiment_model = 'sentiment-20261201-000000'")
            .await;
        assert_eq!(stale, 3 * n as u64);
        let (r, wall) = run(&s, params).await;
        assert_eq!(r["messages"], 3 * n, "{r}");
        let ms = r["elapsedMs"].as_f64().unwrap();
        rows.push(format!(
            "| {case} | {} | {} | {:.2} s | {:.0} | {wall:.2} s |",
            r["messages"],
            r["rescored"],
            ms / 1000.0,
            r["messages"].as_f64().unwrap() / (ms / 1000.0)
        ));
    }
    println!("| run | messages | by the head alone | job time | messages/s | wall |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
