//! Persona build time for N members (default 10,000) through the real API:
//! imports members, 3 messages and 5 events each, and friend edges, then
//! times a BUILD_PERSONAS job (its own `elapsedMs` and the wall clock).
//!
//! `LINGXI_API_BIN=target/release/api ./target/release/bench_personas 100000`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{fmt::Write, time::Instant};

use serde_json::json;
use tests::{Options, Server, eventually};

const TEXTS: &[&str] = &[
    "这款面霜很滋润，秋冬用刚刚好",
    "外卖等了一个半小时，送到都凉了",
    "周末去三亚旅游，酒店海景太美了",
    "新手机拍照太清晰了，夜景模式很惊艳",
    "宝宝用了这款纸尿裤一晚上都没红屁屁",
    "跑鞋穿了一个月就开胶，质量太差了",
];

async fn import(s: &Server, what: &str, format: &str, data: &str) {
    let q = format!(
        "mutation($d: String!) {{ {what}(input: {{ format: {format}, data: $d }}) {{ accepted rejectedCount }} }}"
    );
    let d = s.gql(&q, json!({ "d": data })).await;
    assert_eq!(d[what]["rejectedCount"], 0, "{d}");
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    // Workers off while loading, so the debounced refresh does not race the timing.
    let s = Server::start_with(Options {
        extra_env: vec![("LINGXI_MODELS".into(), "off".into())],
        ..Default::default()
    })
    .await;
    println!(
        "api binary: {}; database: {}; members: {n}",
        tests::api_bin().display(),
        tests::backend()
    );
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50_000) {
        let mut members = String::from("openid,city,age\n");
        let mut messages = String::new();
        let mut events = String::from("openid,type,at\n");
        let mut relations = String::from("openid,friendOpenid\n");
        for &i in chunk {
            let _ = writeln!(members, "o_p{i:07},上海,{}", 18 + i % 40);
            for k in 0..3 {
                let text = TEXTS[(i + k) % TEXTS.len()];
                let _ = writeln!(
                    messages,
                    "{}",
                    json!({ "openid": format!("o_p{i:07}"), "text": format!("{text}{k}"), "at": format!("2026-11-{:02}T08:00:00Z", 1 + (i + k) % 26) })
                );
            }
            for k in 0..5 {
                let _ = writeln!(
                    events,
                    "o_p{i:07},{},2026-11-{:02}T{:02}:00:00Z",
                    ["view", "click", "share"][k % 3],
                    1 + (i + k) % 26,
                    k
                );
            }
            for k in 1..=3 {
                let _ = writeln!(relations, "o_p{i:07},o_p{:07}", (i * 31 + k * 7919) % n);
            }
        }
        import(&s, "importMembers", "CSV", &members).await;
        import(&s, "importMessages", "JSONL", &messages).await;
        import(&s, "importEvents", "CSV", &events).await;
        import(&s, "importRelations", "CSV", &relations).await;
    }
    println!("loaded in {:.1} s", t.elapsed().as_secs_f64());
    // Let the debounced refresh jobs the imports queued finish first.
    let t = Instant::now();
    let idle = eventually(600, || async {
        let d = s.gql("{ q: jobs(status: QUEUED) { totalCount } r: jobs(status: RUNNING) { totalCount } }", json!({})).await;
        (d["r"]["totalCount"] == 0 && d["q"]["totalCount"].as_i64().unwrap() <= 1).then_some(())
    })
    .await;
    assert!(idle.is_some());
    println!(
        "refresh jobs the imports queued drained in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let id = s
        .gql(
            "mutation { enqueueJob(input: { kind: BUILD_PERSONAS }) { id } }",
            json!({}),
        )
        .await["enqueueJob"]["id"]
        .clone();
    let done = eventually(3600, || async {
        let j = s
            .gql(
                "query($id: ID!) { job(id: $id) { status result error } }",
                json!({ "id": id }),
            )
            .await["job"]
            .clone();
        (j["status"] == "SUCCEEDED" || j["status"] == "FAILED").then_some(j)
    })
    .await
    .unwrap();
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    println!(
        "BUILD_PERSONAS {n} members: job {} ms, wall {:.2} s ({:.0} members/s)",
        done["result"]["elapsedMs"],
        t.elapsed().as_secs_f64(),
        n as f64 / t.elapsed().as_secs_f64()
    );
}
