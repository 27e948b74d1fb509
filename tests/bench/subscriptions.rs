//! Open subscriptions against the real `api` binary: what idle
//! `campaignUpdated` subscriptions cost the API process and the database,
//! and how soon an update reaches every subscriber of its campaign.
//!
//! `LINGXI_API_BIN=target/release/api cargo run --release -p tests --bin bench_subscriptions -- [subscriptions] [campaigns] [connections]`
//! (defaults 2000, 200, 50). Prints one line per measurement; record results
//! in docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tests::{ADMIN_KEY, Server};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// CPU seconds (user + system) the process has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    let hz: f64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0);
    ticks / hz
}

/// The watcher's query count; NaN for a binary without the watcher (an
/// earlier release, for a before/after comparison).
async fn watch_queries(s: &Server) -> f64 {
    tests::metric(
        &s.metrics().await,
        "lingxi_subscription_watch_queries_total",
    )
    .unwrap_or(f64::NAN)
}

/// CPU share and watcher queries per second over `secs` of doing nothing.
async fn idle(s: &Server, secs: u64) -> (f64, f64) {
    let q0 = watch_queries(s).await;
    let c0 = cpu_secs(s.pid());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let c1 = cpu_secs(s.pid());
    let q1 = watch_queries(s).await;
    ((c1 - c0) / secs as f64 * 100.0, (q1 - q0) / secs as f64)
}

#[tokio::main]
async fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    let (subs, campaigns, conns) = (arg(1, 2000), arg(2, 200), arg(3, 50));
    let s = Server::start().await;
    println!("api binary: {}", tests::api_bin().display());
    println!("database: {}", tests::backend());
    let mut ids = Vec::new();
    for i in 0..campaigns {
        ids.push(
            s.gql(
                "mutation($n: String!) { createCampaign(input: { name: $n }) { id } }",
                json!({ "n": format!("活动{i}") }),
            )
            .await["createCampaign"]["id"]
                .clone(),
        );
    }
    let (cpu, qps) = idle(&s, 10).await;
    println!("no subscription, idle 10 s: api CPU {cpu:.1} %, watcher queries {qps:.1}/s");

    // Each message: (campaign index, when it arrived).
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let t = Instant::now();
    let mut per_campaign = vec![0usize; campaigns];
    for c in 0..conns {
        let mut ws = s.ws(ADMIN_KEY).await;
        for k in (c..subs).step_by(conns) {
            let j = k % campaigns;
            per_campaign[j] += 1;
            ws.send(Message::text(json!({ "id": format!("{j}-{k}"), "type": "subscribe", "payload": { "query": "subscription($id: ID!) { campaignUpdated(id: $id) { name } }", "variables": { "id": ids[j] } } }).to_string())).await.unwrap();
        }
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] == "next" {
                    let j = v["id"].as_str().unwrap().split('-').next().unwrap();
                    let _ = tx.send((j.parse().unwrap(), Instant::now()));
                }
            }
        });
    }
    for _ in 0..subs {
        tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("every subscription's first message")
            .unwrap();
    }
    println!(
        "{subs} subscriptions on {campaigns} campaigns over {conns} connections: all started in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let m = s.metrics().await;
    println!(
        "rows watched: {}",
        tests::metric(&m, "lingxi_subscription_rows_watched").unwrap_or(f64::NAN)
    );
    let (cpu, qps) = idle(&s, 10).await;
    println!("{subs} idle subscriptions, 10 s: api CPU {cpu:.1} %, watcher queries {qps:.1}/s");

    // Update latency: from the mutation's answer to the last subscriber of
    // that campaign receiving the change.
    let rounds = 40.min(campaigns);
    let mut first = Vec::new();
    let mut last = Vec::new();
    for r in 0..rounds {
        let j = (r * 7) % campaigns;
        s.gql(
            "mutation($id: ID!, $n: String!) { updateCampaign(id: $id, input: { name: $n }) { id } }",
            json!({ "id": ids[j], "n": format!("活动{j}·改{r}") }),
        )
        .await;
        let t0 = Instant::now();
        let mut got: HashMap<usize, Vec<Instant>> = HashMap::new();
        while got.get(&j).map_or(0, Vec::len) < per_campaign[j] {
            let (c, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("the update reaches its subscribers")
                .unwrap();
            got.entry(c).or_default().push(at);
        }
        assert_eq!(got.len(), 1, "only that campaign's subscribers woke");
        let times = &got[&j];
        first.push(times[0].saturating_duration_since(t0).as_secs_f64() * 1000.0);
        last.push(
            times
                .last()
                .unwrap()
                .saturating_duration_since(t0)
                .as_secs_f64()
                * 1000.0,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() * 9 / 10], v[v.len() - 1])
    };
    let (f50, f90, fmax) = stats(&mut first);
    let (l50, l90, lmax) = stats(&mut last);
    println!(
        "update → first subscriber: p50 {f50:.0} ms, p90 {f90:.0} ms, max {fmax:.0} ms ({rounds} updates)"
    );
    println!(
        "update → last of its {} subscribers: p50 {l50:.0} ms, p90 {l90:.0} ms, max {lmax:.0} ms",
        subs / campaigns
    );
}
