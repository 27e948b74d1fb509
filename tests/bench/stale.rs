//! The nightly check for stale sentiment scores ("has any analysed message
//! of the account been scored by another head than the one in use?") on an
//! account of N members with 3 messages each (default 100,000 members),
//! through the real schema: `any_stale` (three probes of one range of
//! `ix_message_sentiment_model` each) against the single `IS NULL OR <>`
//! query it replaced, without the index (as before) and with it, when
//! nothing is stale (as on most nights) and when one message is.
//!
//! `./target/debug/bench_stale 100000` (`LINGXI_TEST_BACKEND=postgres` for
//! PostgreSQL)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{fmt::Write, time::Instant};

use entity::message;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use serde_json::json;
use tests::{Options, Server};
use uuid::Uuid;
use worker::jobs::stale::any_stale;

const HEAD: &str = "sentiment-20261201-143908+lora-809aa222";
const RUNS: usize = 21;

/// The query `any_stale` replaced: one OR with `<>`, which no index range
/// serves.
async fn any_stale_before(db: &impl ConnectionTrait, account: Uuid, head: &str) -> bool {
    let one: Option<Uuid> = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .filter(message::Column::AccountId.eq(account))
        .filter(message::Column::AnalyzedAt.is_not_null())
        .filter(
            Condition::any()
                .add(message::Column::SentimentModel.is_null())
                .add(message::Column::SentimentModel.ne(head)),
        )
        .limit(1)
        .into_tuple()
        .one(db)
        .await
        .unwrap();
    one.is_some()
}

/// Median milliseconds of `RUNS` calls, and what the last one answered.
async fn time<F, Fut>(mut f: F) -> (f64, bool)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut ms = Vec::with_capacity(RUNS);
    let mut answer = false;
    for _ in 0..RUNS {
        let t = Instant::now();
        answer = f().await;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    (ms[RUNS / 2], answer)
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    // No workers: the imports' persona refreshes are not what is measured.
    let s = Server::start_with(Options {
        extra_env: vec![("LINGXI_MODELS".into(), "off".into())],
        args: vec!["--no-worker".into()],
        ..Default::default()
    })
    .await;
    println!(
        "database: {}; members: {n}; messages: {}",
        tests::backend(),
        3 * n
    );
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let mut members = String::from("openid\n");
        let mut messages = String::new();
        for &i in chunk {
            let _ = writeln!(members, "o_s{i:07}");
            for k in 0..3 {
                let _ = writeln!(
                    messages,
                    "{}",
                    json!({ "openid": format!("o_s{i:07}"), "text": format!("这款面霜很滋润{i}-{k}"), "at": "2026-11-20T08:00:00Z" })
                );
            }
        }
        for (what, format, data) in [
            ("importMembers", "CSV", members),
            ("importMessages", "JSONL", messages),
        ] {
            let q = format!(
                "mutation($d: String!) {{ {what}(input: {{ format: {format}, data: $d }}) {{ rejectedCount }} }}"
            );
            let d = s.gql(&q, json!({ "d": data })).await;
            assert_eq!(d[what]["rejectedCount"], 0, "{d}");
        }
    }
    // Every message scored by the head in use.
    let scored = s
        .sql_exec(&format!(
            "UPDATE message SET analyzed_at = created_at, sentiment_model = '{HEAD}'"
        ))
        .await;
    assert_eq!(scored, 3 * n as u64);
    let db = sea_orm::Database::connect(&s.database_url).await.unwrap();
    db.execute_unprepared(if tests::backend() == "postgres" {
        "ANALYZE message"
    } else {
        "ANALYZE"
    })
    .await
    .unwrap();
    let account = message::Entity::find()
        .one(&db)
        .await
        .unwrap()
        .unwrap()
        .account_id;

    let index = "ix_message_sentiment_model";
    for case in ["nothing stale", "one message stale"] {
        // Before: the single OR query without the index (migration 11).
        db.execute_unprepared(&format!("DROP INDEX {index}"))
            .await
            .unwrap();
        let (before_ms, before) = time(|| any_stale_before(&db, account, HEAD)).await;
        db.execute_unprepared(&format!(
            "CREATE INDEX {index} ON message (account_id, sentiment_model, analyzed_at)"
        ))
        .await
        .unwrap();
        let (or_ms, or) = time(|| any_stale_before(&db, account, HEAD)).await;
        let (now_ms, now) = time(|| async { any_stale(&db, account, HEAD).await.unwrap() }).await;
        assert_eq!((now, or), (before, before), "every form agrees");
        assert_eq!(now, case != "nothing stale");
        println!(
            "{case}: before (single OR query, no index) {before_ms:.3} ms; \
             the OR query with the index {or_ms:.3} ms; any_stale (three range probes) {now_ms:.3} ms \
             (medians of {RUNS})"
        );
        // one message, in the middle of the account, by another head
        let changed = s
            .sql_exec(&format!(
                "UPDATE message SET sentiment_model = 'sentiment-20261130-000000' \
                 WHERE text = '这款面霜很滋润{}-1'",
                n / 2
            ))
            .await;
        assert_eq!(changed, 1);
    }
}
