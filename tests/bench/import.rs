//! Import throughput over real HTTP against the real `api` binary.
//!
//! `make bench-import` (release build), or
//! `LINGXI_API_BIN=target/release/api cargo run --release -p tests --bin bench_import -- [members]`.
//! Prints one line per phase; record results in docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{fmt::Write, time::Instant};

use serde_json::json;
use tests::{ADMIN_KEY, Server};

const CITIES: &[(&str, &str)] = &[
    ("上海", "上海"),
    ("北京", "北京"),
    ("广州", "广东"),
    ("杭州", "浙江"),
    ("成都", "四川"),
];

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut members =
        String::from("openid,nickname,gender,age,city,province,tags,subscribed,subscribedAt\n");
    let mut events = String::from("openid,type,at,value\n");
    for i in 0..n {
        let (city, province) = CITIES[i % CITIES.len()];
        let _ = writeln!(
            members,
            "o_bench_{i:08},会员{i},{},{},{city},{province},护肤|新客,true,2026-0{}-1{}T08:00:00Z",
            if i % 3 == 0 { "male" } else { "female" },
            18 + i % 40,
            1 + i % 9,
            i % 10
        );
        let _ = writeln!(
            events,
            "o_bench_{i:08},{},2026-11-{:02}T{:02}:00:00Z,{}",
            ["view", "click", "purchase"][i % 3],
            1 + i % 28,
            i % 24,
            i % 500
        );
    }
    let s = Server::start().await;
    let bin = tests::api_bin();
    println!("api binary: {}", bin.display());
    println!("database: {}", tests::backend());
    println!(
        "members CSV: {n} rows, {:.1} MB",
        members.len() as f64 / 1e6
    );
    let q = "mutation($d: String!) { importMembers(input: { format: CSV, data: $d }) { accepted rejectedCount } }";
    for phase in [
        "members import (insert)",
        "members re-import (upsert, no change)",
    ] {
        let t = Instant::now();
        let d = s.gql(q, json!({ "d": members })).await;
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(d["importMembers"]["accepted"], n, "{d}");
        println!("{phase}: {secs:.2} s, {:.0} rows/s", n as f64 / secs);
    }
    let q = "mutation($d: String!) { importEvents(input: { format: CSV, data: $d }) { accepted rejectedCount } }";
    let t = Instant::now();
    let d = s.gql(q, json!({ "d": events })).await;
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(d["importEvents"]["accepted"], n, "{d}");
    println!("events import: {secs:.2} s, {:.0} rows/s", n as f64 / secs);
    let total = s.gql("{ members { totalCount } }", json!({})).await;
    assert_eq!(total["members"]["totalCount"], n);
    let _ = ADMIN_KEY;
}
