use std::process::Command;

use serde_json::{Value, json};
use tests::{ADMIN_KEY, Options, Server};

async fn with_models() -> Server {
    Server::start_with(Options {
        models: true,
        ..Default::default()
    })
    .await
}

/// The active sentiment version: `{ version active metrics }`.
async fn active_sentiment(s: &Server) -> Value {
    let d = s
        .gql(
            "{ modelVersions(kind: SENTIMENT) { version active metrics } }",
            json!({}),
        )
        .await;
    d["modelVersions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["active"] == true)
        .expect("an active sentiment head")
        .clone()
}

/// Review-length (≥ 100 characters), mixed reviews written for this test
/// that the shipped head scores near the middle (0.54 and 0.47).
const MIXED_LONG: [&str; 2] = [
    "房间面积挺大，窗外能看到江景，这是最大的优点。但是卫生间有股下水道的味道，晚上还有蚊子。早餐只有几样，去晚了基本没得吃。前台退房的时候查房查了很久，耽误了我们赶火车。总的来说景色加分，其他的都很一般。",
    "衣柜和书桌都是实木的，看得出当年装修下了功夫，可惜现在有些掉漆了。床垫偏软，腰不好的人可能睡不惯。窗外是条小吃街，晚上热闹到十一点，吃东西方便但有点吵。前台会说英语。价格在附近属于中等，整体来说没什么惊喜。",
];

const ANALYZE: &str =
    "query($t: [String!]!) { analyzeText(texts: $t) { text sentiment { label score } keywords } }";

#[tokio::test]
async fn sentiment_points_the_right_way_on_obvious_chinese_texts() {
    let s = with_models().await;
    let texts = [
        "太好用了，非常满意，强烈推荐给朋友！",
        "质量太差了，用了两天就坏了，非常失望，再也不买了",
        "物流很快，包装完好，客服态度也很好",
        "客服不理人，退货流程拖了一个月，气死我了",
    ];
    let d = s.gql(ANALYZE, json!({ "t": texts })).await;
    let r = d["analyzeText"].as_array().unwrap();
    let score = |i: usize| r[i]["sentiment"]["score"].as_f64().unwrap();
    assert_eq!(r[0]["sentiment"]["label"], "POSITIVE", "{r:?}");
    assert_eq!(r[1]["sentiment"]["label"], "NEGATIVE", "{r:?}");
    assert_eq!(r[2]["sentiment"]["label"], "POSITIVE", "{r:?}");
    assert_eq!(r[3]["sentiment"]["label"], "NEGATIVE", "{r:?}");
    assert!(score(0) > 0.8 && score(1) < 0.2, "{r:?}");
    assert!(
        r.iter()
            .all(|x| (0.0..=1.0).contains(&x["sentiment"]["score"].as_f64().unwrap()))
    );
    assert!(
        r[1]["keywords"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "质量" || k == "失望"),
        "{r:?}"
    );
    // An integration key may call it too.
    let integration = s.new_key(ADMIN_KEY, "INTEGRATION").await;
    s.ok_as(&integration, ANALYZE, json!({ "t": ["不错"] }))
        .await;
}

#[tokio::test]
async fn plain_customer_messages_stay_neutral() {
    use worker::sentiment::neutral::{FRESH_PROBES, PROBES};
    let s = with_models().await;
    let texts: Vec<&str> = PROBES.iter().chain(FRESH_PROBES).copied().collect();
    let d = s.gql(ANALYZE, json!({ "t": texts })).await;
    let r = d["analyzeText"].as_array().unwrap();
    assert_eq!(r.len(), texts.len());
    let neutral = r
        .iter()
        .filter(|x| x["sentiment"]["label"] == "NEUTRAL")
        .count();
    // The shipped head keeps 63 of these 70 hand-written neutral messages
    // in its band for short texts (docs/sentiment.md); with its earlier,
    // narrower single band it kept 55. A few may move on another CPU's
    // int8 rounding, not five.
    assert!(neutral >= 59, "{neutral} of {} NEUTRAL: {r:?}", texts.len());
    // Plain statements and questions are not called angry: none scores
    // like a clear complaint.
    assert!(
        r.iter()
            .all(|x| x["sentiment"]["score"].as_f64().unwrap() > 0.15),
        "{r:?}"
    );
}

#[tokio::test]
async fn emoji_stickers_and_slang_carry_sentiment() {
    let s = with_models().await;
    let texts = [
        "[强]",
        "[发怒]",
        "😭😭",
        "好的",
        "好的[强]",
        "好的[流泪]",
        "客服不理人，退货流程拖了一个月，气死我了[哈哈]",
        "这家店yyds",
        "智商税",
        "再也不会回购了",
    ];
    let d = s.gql(ANALYZE, json!({ "t": texts })).await;
    let r = d["analyzeText"].as_array().unwrap();
    let score = |i: usize| r[i]["sentiment"]["score"].as_f64().unwrap();
    // A message that is only a sticker or emoji gets its polarity.
    assert_eq!(r[0]["sentiment"]["label"], "POSITIVE", "{r:?}");
    assert_eq!(r[1]["sentiment"]["label"], "NEGATIVE", "{r:?}");
    assert_eq!(r[2]["sentiment"]["label"], "NEGATIVE", "{r:?}");
    // The same words read warmer with [强] and colder with [流泪].
    assert!(score(4) > score(3) + 0.1, "{r:?}");
    assert!(score(5) < score(3) - 0.1, "{r:?}");
    // One opposite sticker does not overturn a clear complaint.
    assert!(score(6) < 0.5, "{r:?}");
    // Marketing slang newer than the training corpus; a negation flips it.
    assert_eq!(r[7]["sentiment"]["label"], "POSITIVE", "{r:?}");
    assert_eq!(r[8]["sentiment"]["label"], "NEGATIVE", "{r:?}");
    assert_eq!(r[9]["sentiment"]["label"], "NEGATIVE", "{r:?}");
}

#[tokio::test]
async fn labels_follow_the_heads_band_and_long_reviews_count_their_end() {
    let s = with_models().await;
    let praise = "房间干净，服务热情。".repeat(80);
    let complaint = "隔音太差，空调坏了，再也不来了。".repeat(80);
    let texts = vec![
        praise.clone(),                 // ≈ 1,000 tokens of praise
        format!("{praise}{complaint}"), // the same, then as much complaint
        "麻烦发一下发票。".into(),
        "明天下午三点开会。".into(),
        "这是我第一次下单。".into(),
        "还行吧，一般般。".into(),
        // review-length and mixed: scores the short band would call NEUTRAL
        MIXED_LONG[0].into(),
        MIXED_LONG[1].into(),
    ];
    let d = s.gql(ANALYZE, json!({ "t": texts })).await;
    let r = d["analyzeText"].as_array().unwrap();
    // The active head's bands, as the registry reports them:
    // NEGATIVE < negativeBelow ≤ NEUTRAL ≤ positiveAbove < POSITIVE, with
    // the long* band for texts of longMinChars characters (white space not
    // counted) or more.
    let active = active_sentiment(&s).await;
    let m = &active["metrics"];
    let band = |key: &str| m[key].as_f64().unwrap() as f32;
    let (low, high) = (band("negativeBelow"), band("positiveAbove"));
    let (long_low, long_high) = (band("longNegativeBelow"), band("longPositiveAbove"));
    let long_min = m["longMinChars"].as_u64().unwrap() as usize;
    assert!(
        0.0 < low
            && low <= long_low
            && long_low <= 0.5
            && 0.5 <= long_high
            && long_high <= high
            && high < 1.0,
        "{active}"
    );
    let mut long_in_short_band = 0;
    for (x, t) in r.iter().zip(&texts) {
        // Scores go through f32 on the way: compare at its precision.
        let p = x["sentiment"]["score"].as_f64().unwrap() as f32;
        let long = t.chars().filter(|c| !c.is_whitespace()).count() >= long_min;
        let (lo, hi) = if long {
            (long_low, long_high)
        } else {
            (low, high)
        };
        let want = if p < lo {
            "NEGATIVE"
        } else if p > hi {
            "POSITIVE"
        } else {
            "NEUTRAL"
        };
        assert_eq!(
            x["sentiment"]["label"], want,
            "score {p}: {}",
            x["sentiment"]
        );
        if long && (low..=high).contains(&p) && want != "NEUTRAL" {
            long_in_short_band += 1;
        }
    }
    // The mixed reviews exercise the long band: a verdict, not NEUTRAL.
    assert!(long_in_short_band >= 1, "{r:?}");
    // Past 512 tokens the text still counts: the complaints pull the mixed review
    // out of POSITIVE (cut at 512 tokens it would read as praise only).
    assert_eq!(r[0]["sentiment"]["label"], "POSITIVE", "{r:?}");
    assert_ne!(r[1]["sentiment"]["label"], "POSITIVE", "{r:?}");
    assert!(
        r[1]["sentiment"]["score"].as_f64().unwrap()
            < r[0]["sentiment"]["score"].as_f64().unwrap() - 0.2,
        "{r:?}"
    );
}

#[tokio::test]
async fn analyze_text_rejects_bad_input() {
    let s = with_models().await;
    let many: Vec<String> = (0..257).map(|i| format!("第{i}条")).collect();
    let body = s
        .err_as(
            Some(ADMIN_KEY),
            ANALYZE,
            json!({ "t": many }),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "texts");
    let body = s
        .err_as(
            Some(ADMIN_KEY),
            ANALYZE,
            json!({ "t": ["好", "  "] }),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "texts[1]");
}

/// A server started without the models says so, rather than "internal
/// error".
#[tokio::test]
async fn analyze_text_without_models_names_the_setting() {
    let s = Server::start().await;
    let body = s
        .err_as(Some(ADMIN_KEY), ANALYZE, json!({ "t": ["好"] }), "INTERNAL")
        .await;
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("LINGXI_MODELS=off"), "{body}");
}

/// A message analysed under an earlier band (here: the single band of
/// earlier releases, which called a 0.54 review NEUTRAL) is labelled by the
/// active head's bands when read, without re-analysis.
#[tokio::test]
async fn message_labels_follow_the_active_heads_bands() {
    let s = with_models().await;
    s.import(ADMIN_KEY, "importMembers", "CSV", "openid\no_mixed\n")
        .await;
    let line = json!({ "openid": "o_mixed", "text": MIXED_LONG[0], "at": chrono::Utc::now().to_rfc3339() });
    s.import(ADMIN_KEY, "importMessages", "JSONL", &line.to_string())
        .await;
    assert_eq!(s.run_job("ANALYZE_TEXTS", 120).await["status"], "SUCCEEDED");
    let read = || async {
        let d = s
            .gql(
                "{ members { edges { node { messages { edges { node { sentimentLabel sentiment } } } } } } }",
                json!({}),
            )
            .await;
        d["members"]["edges"][0]["node"]["messages"]["edges"][0]["node"].clone()
    };
    let m = read().await;
    let p = m["sentiment"].as_f64().unwrap();
    assert!(
        (0.35..=0.65).contains(&p),
        "a score the single band called NEUTRAL: {m}"
    );
    let verdict = if p > 0.5 { "POSITIVE" } else { "NEGATIVE" };
    assert_eq!(m["sentimentLabel"], verdict, "{m}");
    // what an earlier release stored
    assert_eq!(
        s.sql_exec("UPDATE message SET sentiment_label = 'NEUTRAL'")
            .await,
        1
    );
    assert_eq!(read().await["sentimentLabel"], verdict);
}

#[tokio::test]
async fn analysis_jobs_label_messages_and_feed_personas() {
    let s = with_models().await;
    s.import(
        ADMIN_KEY,
        "importMembers",
        "CSV",
        "openid\no_happy\no_angry\n",
    )
    .await;
    let now = chrono::Utc::now();
    let lines: Vec<String> = [
        ("o_happy", "这款面霜太好用了，皮肤水润，已经回购第三次"),
        ("o_happy", "精华效果很明显，闺蜜都说我气色好，非常满意"),
        ("o_angry", "外卖等了两个小时，饭菜全凉了，太差劲了"),
        ("o_angry", "客服态度恶劣，退款拖了一个月，非常生气"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (o, t))| json!({ "openid": o, "text": t, "at": (now - chrono::Duration::hours(i as i64 + 1)).to_rfc3339() }).to_string())
    .collect();
    s.import(ADMIN_KEY, "importMessages", "JSONL", &lines.join("\n"))
        .await;
    let j = s.run_job("ANALYZE_TEXTS", 120).await;
    assert_eq!(j["status"], "SUCCEEDED", "{j}");
    let d = s
        .gql(
            "{ members { edges { node { openid messages { edges { node { sentimentLabel sentiment } } }
               persona { sentiment interests { name } embeddingModel } } } } }",
            json!({}),
        )
        .await;
    let member = |o: &str| -> Value {
        d["members"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"]["openid"] == o)
            .unwrap()["node"]
            .clone()
    };
    let happy = member("o_happy");
    let angry = member("o_angry");
    for m in happy["messages"]["edges"].as_array().unwrap() {
        assert_eq!(m["node"]["sentimentLabel"], "POSITIVE", "{happy}");
    }
    for m in angry["messages"]["edges"].as_array().unwrap() {
        assert_eq!(m["node"]["sentimentLabel"], "NEGATIVE", "{angry}");
    }
    let hs = happy["persona"]["sentiment"]
        .as_f64()
        .expect("persona sentiment");
    let as_ = angry["persona"]["sentiment"]
        .as_f64()
        .expect("persona sentiment");
    assert!(hs > 0.7 && as_ < 0.3, "{hs} {as_}");
    assert_eq!(
        happy["persona"]["interests"][0]["name"], "美妆护肤",
        "{happy}"
    );
    assert_eq!(angry["persona"]["interests"][0]["name"], "美食", "{angry}");
    assert!(
        happy["persona"]["embeddingModel"]
            .as_str()
            .unwrap()
            .contains("e5")
    );
}

#[tokio::test]
async fn installed_models_are_listed_with_their_versions() {
    let s = with_models().await;
    let d = s
        .gql(
            "{ modelVersions { kind version active metrics } }",
            json!({}),
        )
        .await;
    let list = d["modelVersions"].as_array().unwrap();
    for kind in ["EMBEDDING", "SENTIMENT"] {
        let active: Vec<&Value> = list
            .iter()
            .filter(|m| m["kind"] == kind && m["active"] == true)
            .collect();
        assert_eq!(active.len(), 1, "one active {kind}: {list:?}");
    }
    let sentiment = list.iter().find(|m| m["kind"] == "SENTIMENT").unwrap();
    assert!(
        sentiment["metrics"]["balancedAccuracy"].as_f64().unwrap() > 0.8,
        "{sentiment}"
    );
    let d = s
        .gql("{ modelVersions(kind: EMBEDDING) { kind } }", json!({}))
        .await;
    assert!(
        d["modelVersions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["kind"] == "EMBEDDING")
    );
}

/// A missing or corrupt model stops start-up with the command that fixes it.
#[tokio::test]
async fn missing_models_give_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            Command::new(tests::api_bin())
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", &dir)
                .env("LINGXI_DATA_DIR", dir.join("data"))
                .env("LINGXI_MODELS_DIR", dir.join("no-models-here"))
                .env("LINGXI_HTTP_ADDR", "127.0.0.1:0")
                .env("LINGXI_DEMO", "0")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("make setup"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}

/// A database from an earlier release has that release's built-in head
/// active. Its weights left with that release: on start, this release's
/// built-in head takes over and the old version stays listed, inactive.
/// So does a retrained head that the built-in one beats.
#[tokio::test]
async fn an_earlier_releases_builtin_head_is_replaced_on_start() {
    const VERSIONS: &str = "{ modelVersions(kind: SENTIMENT) { version active } }";
    let s = with_models().await;
    let d = s.gql(VERSIONS, json!({})).await;
    let list = d["modelVersions"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let shipped = list[0]["version"].as_str().unwrap().to_owned();
    assert_eq!(list[0]["active"], true);
    let old = "sentiment-20200101-000000";
    let n = s
        .sql_exec(&format!(
            "UPDATE model_version SET version = '{old}' WHERE kind = 'SENTIMENT' AND path = 'builtin'"
        ))
        .await;
    assert_eq!(n, 1);
    // A worker process starting on this database syncs the registry.
    let _w = s.spawn_worker(1);
    // The new row is listed first and activated by a second statement:
    // wait for both.
    let list = tests::eventually(90, || async {
        let d = s.gql(VERSIONS, json!({})).await;
        let list = d["modelVersions"].as_array().unwrap().clone();
        let switched = list
            .iter()
            .any(|m| m["version"] == shipped.as_str() && m["active"] == true);
        (list.len() == 2 && switched).then_some(list)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the new built-in head was not listed and activated; worker log:\n{}",
            s.worker_log(1)
        )
    });
    let active: Vec<&Value> = list.iter().filter(|m| m["active"] == true).collect();
    assert_eq!(active.len(), 1, "{list:?}");
    assert_eq!(active[0]["version"], shipped.as_str(), "{list:?}");
    assert!(
        list.iter()
            .any(|m| m["version"] == old && m["active"] == false),
        "{list:?}"
    );

    // A retrained head that the built-in one beats on the validation split
    // gives way too (the rule retraining follows); its file need not exist.
    let n = s
        .sql_exec(&format!(
            "UPDATE model_version SET active = (version = '{old}'), \
             path = CASE WHEN version = '{old}' THEN '/gone/retrained.onnx' ELSE path END, \
             metrics = CASE WHEN version = '{old}' THEN '{{\"balancedAccuracy\": 0.5}}' ELSE metrics END \
             WHERE kind = 'SENTIMENT'"
        ))
        .await;
    assert_eq!(n, 2);
    let d = s.gql(VERSIONS, json!({})).await;
    assert!(
        d["modelVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["version"] == old && m["active"] == true),
        "{d}"
    );
    let _w2 = s.spawn_worker(2);
    tests::eventually(90, || async {
        let d = s.gql(VERSIONS, json!({})).await;
        d["modelVersions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["version"] == shipped.as_str() && m["active"] == true)
            .then_some(())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the built-in head was not reactivated; worker log:\n{}",
            s.worker_log(2)
        )
    });
}

/// Processes starting together on a database with no versions recorded
/// (an API and its workers after a fresh install) record each model version
/// once, with one active version per kind.
#[tokio::test]
async fn processes_starting_together_record_each_version_once() {
    let s = with_models().await;
    let n = s.sql_exec("DELETE FROM model_version").await;
    assert_eq!(n, 2, "one embedding and one sentiment version at start");
    let mut workers: Vec<_> = (1..=3).map(|i| s.spawn_worker(i)).collect();
    tests::all_started(&mut workers, |i| s.worker_log(i), "worker started").await;
    let d = s
        .gql("{ modelVersions { kind version active } }", json!({}))
        .await;
    let list = d["modelVersions"].as_array().unwrap();
    for kind in ["EMBEDDING", "SENTIMENT"] {
        let rows: Vec<&Value> = list.iter().filter(|m| m["kind"] == kind).collect();
        assert_eq!(rows.len(), 1, "{kind} recorded once: {list:?}");
        assert_eq!(rows[0]["active"], true, "{list:?}");
    }
}

/// A built-in head recorded by an earlier build of this release with other
/// metrics (before its band was part of them) gets its JSON's on the next start.
#[tokio::test]
async fn the_builtin_heads_recorded_metrics_follow_its_json() {
    let s = with_models().await;
    let n = s
        .sql_exec(
            "UPDATE model_version SET metrics = '{\"balancedAccuracy\": 0.86}' \
             WHERE kind = 'SENTIMENT' AND path = 'builtin'",
        )
        .await;
    assert_eq!(n, 1);
    assert!(active_sentiment(&s).await["metrics"]["negativeBelow"].is_null());
    let mut workers = vec![s.spawn_worker(1)];
    tests::all_started(&mut workers, |i| s.worker_log(i), "worker started").await;
    let active = active_sentiment(&s).await;
    let m = &active["metrics"];
    assert!(m["negativeBelow"].as_f64().unwrap() < 0.5, "{active}");
    assert!(m["positiveAbove"].as_f64().unwrap() > 0.5, "{active}");
    assert_ne!(m["balancedAccuracy"].as_f64().unwrap(), 0.86, "{active}");
}

/// RETRAIN_SENTIMENT trains a new head, records it with its metrics and
/// promotes it only if it is better than the active one.
#[tokio::test]
async fn retraining_records_a_new_version_and_promotes_only_if_better() {
    let s = with_models().await;
    let active_before = active_sentiment(&s).await;
    let j = s.run_job("RETRAIN_SENTIMENT", 900).await;
    assert_eq!(j["status"], "SUCCEEDED", "{j}");
    let after = s
        .gql(
            "{ modelVersions(kind: SENTIMENT) { version active metrics sha256 } }",
            json!({}),
        )
        .await;
    let list = after["modelVersions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let new = list
        .iter()
        .find(|m| m["version"] == j["result"]["version"])
        .unwrap();
    // The registry's checksum is the written head's.
    let file = s.dir.path().join(format!(
        "data/models/sentiment/{}.onnx",
        new["version"].as_str().unwrap()
    ));
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    use sha2::Digest;
    assert_eq!(new["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    let better = new["metrics"]["balancedAccuracy"].as_f64().unwrap()
        > active_before["metrics"]["balancedAccuracy"]
            .as_f64()
            .unwrap();
    assert_eq!(j["result"]["promoted"], better);
    assert_eq!(new["active"], better);

    // Against a head recorded as worse, the next one is promoted, and the
    // stored messages of every account that has some are read again under
    // it (an account without analysed messages gets no job).
    s.import(ADMIN_KEY, "importMembers", "CSV", "openid\no_1\n")
        .await;
    let line = json!({ "openid": "o_1", "text": "物流很快，包装也好", "at": chrono::Utc::now().to_rfc3339() });
    s.import(ADMIN_KEY, "importMessages", "JSONL", &line.to_string())
        .await;
    let a = s.run_job("ANALYZE_TEXTS", 120).await;
    assert_eq!(a["status"], "SUCCEEDED", "{a}");
    s.new_account("没有消息的店").await;
    let n = s
        .sql_exec(
            "UPDATE model_version SET metrics = '{\"balancedAccuracy\": 0.5}' \
             WHERE kind = 'SENTIMENT' AND active = true AND account_id IS NULL",
        )
        .await;
    assert_eq!(n, 1);
    // whole-account jobs (refreshes of some members take `stale` too)
    let reanalyses = "SELECT COUNT(*) FROM job_run WHERE kind = 'ANALYZE_TEXTS' AND CAST(params AS TEXT) LIKE '%stale%' AND CAST(params AS TEXT) NOT LIKE '%memberIds%'";
    let before = s.sql_count(reanalyses).await;
    let j = s.run_job("RETRAIN_SENTIMENT", 900).await;
    assert_eq!(j["result"]["promoted"], true, "{j}");
    assert_eq!(s.sql_count("SELECT COUNT(*) FROM account").await, 2);
    assert_eq!(j["result"]["reanalysisJobs"], 1, "{j}");
    assert_eq!(s.sql_count(reanalyses).await, before + 1);
    // The message is scored again by the new head, and then no longer
    // stale: another such job has nothing to do.
    let version = j["result"]["version"].as_str().unwrap().to_owned();
    let by_new = format!("SELECT COUNT(*) FROM message WHERE sentiment_model = '{version}'");
    let rescored = tests::eventually(120, || async {
        (s.sql_count(&by_new).await == 1).then_some(())
    })
    .await;
    assert!(rescored.is_some(), "{}", s.log());
    let again = analyze_job(&s, "{ stale: true }").await;
    assert_eq!(again["status"], "SUCCEEDED", "{again}");
    assert_eq!(again["result"]["messages"], 0, "{again}");
    // and, having scored nothing, rebuilds no persona
    assert_eq!(again["result"]["personas"]["members"], 0, "{again}");
    assert_eq!(list.iter().filter(|m| m["active"] == true).count(), 1);

    // Another process switches the shared head back (as its
    // `activateModelVersion` would): `analyzeText` and a re-analysis run
    // here at once score with that head, not with the one this process
    // still holds until its periodic registry check.
    let first = new["version"].as_str().unwrap().to_owned();
    let switch = format!(
        "UPDATE model_version SET active = (version = '{first}') \
         WHERE kind = 'SENTIMENT' AND account_id IS NULL"
    );
    let analyze = r#"{ analyzeText(texts: ["物流很快，包装也好"]) { sentiment { model } } }"#;
    let model = |v: serde_json::Value| v["analyzeText"][0]["sentiment"]["model"].clone();
    assert_eq!(model(s.gql(analyze, json!({})).await), version.as_str());
    assert!(s.sql_exec(&switch).await >= 2);
    // `analyzeText` reads with it at once too (one small registry read per
    // request, not the periodic check 30 s later).
    assert_eq!(model(s.gql(analyze, json!({})).await), first.as_str());
    let r = analyze_job(&s, "{ stale: true }").await;
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(r["result"]["sentimentModel"], first.as_str(), "{r}");
    assert_eq!(r["result"]["messages"], 1, "{r}");
    let by_first = format!("SELECT COUNT(*) FROM message WHERE sentiment_model = '{first}'");
    assert_eq!(s.sql_count(&by_first).await, 1);
}

/// Imports `messages` (openid, text) for their members, written now, and
/// waits until `head` has scored them all and no job is left to run (one
/// would re-score what a test then marks stale).
async fn import_analysed(s: &Server, head: &str, messages: &[(&str, &str)]) {
    let mut openids: Vec<&str> = messages.iter().map(|(o, _)| *o).collect();
    openids.dedup();
    let members = format!("openid\n{}\n", openids.join("\n"));
    s.import(ADMIN_KEY, "importMembers", "CSV", &members).await;
    let now = chrono::Utc::now().to_rfc3339();
    let lines: Vec<String> = messages
        .iter()
        .map(|(o, t)| json!({ "openid": o, "text": t, "at": now }).to_string())
        .collect();
    s.import(ADMIN_KEY, "importMessages", "JSONL", &lines.join("\n"))
        .await;
    let by_head = format!("SELECT COUNT(*) FROM message WHERE sentiment_model = '{head}'");
    let n = messages.len() as i64;
    let analysed = tests::eventually(120, || async {
        (s.sql_count(&by_head).await == n).then_some(())
    })
    .await;
    assert!(analysed.is_some(), "{}", s.log());
    let busy = "SELECT COUNT(*) FROM job_run WHERE status IN ('QUEUED', 'RUNNING')";
    let idle = tests::eventually(120, || async {
        (s.sql_count(busy).await == 0).then_some(())
    });
    assert!(idle.await.is_some(), "{}", s.log());
}

/// Runs `ANALYZE_TEXTS` with `params` (a GraphQL object literal).
async fn analyze_job(s: &Server, params: &str) -> Value {
    let d = s
        .gql(
            &format!("mutation {{ enqueueJob(input: {{ kind: ANALYZE_TEXTS, params: {params} }}) {{ id }} }}"),
            json!({}),
        )
        .await;
    let j = s.wait_job(&d["enqueueJob"]["id"], 120).await;
    assert_eq!(j["status"], "SUCCEEDED", "{j}");
    j
}

/// Each stored message's text → (score, label), through the API.
async fn stored_scores(s: &Server) -> std::collections::HashMap<String, (f64, String)> {
    let d = s
        .gql(
            "{ members(first: 5) { nodes { messages(first: 5) { nodes { text sentiment sentimentLabel } } } } }",
            json!({}),
        )
        .await;
    d["members"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["messages"]["nodes"].as_array().unwrap().clone())
        .map(|m| {
            (
                m["text"].as_str().unwrap().to_owned(),
                (
                    m["sentiment"].as_f64().unwrap(),
                    m["sentimentLabel"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

/// After a change of head, analysed messages are scored again by the head
/// alone from the vectors it read, which analysis stores (f16): the scores
/// a fresh analysis gives, without the encoder pass. A message whose
/// stored vector another encoder output gave goes through the encoder, and
/// `reanalyze` takes every message through it.
#[tokio::test]
async fn a_change_of_head_rescores_stored_messages_without_the_encoder() {
    let s = with_models().await;
    let head = active_sentiment(&s).await["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let texts = [
        ("o_1", "物流很快，包装也好，下次还来"),
        ("o_1", "客服一直不回消息，太失望了"),
        ("o_2", "请问这款面霜适合敏感肌吗"),
        ("o_3", "房间干净，前台服务很周到，推荐"),
    ];
    import_analysed(&s, &head, &texts).await;
    let by_head = format!("SELECT COUNT(*) FROM message WHERE sentiment_model = '{head}'");
    // What the head read is kept beside the message: 384 dims in f16, and
    // the adapter's output under the `query: ` prefix.
    let kept = "SELECT COUNT(*) FROM message WHERE LENGTH(head_input) = 768 \
                AND head_input_model LIKE '%+lora-%#query'";
    assert_eq!(s.sql_count(kept).await, 4);
    let fresh = s.gql(ANALYZE, json!({ "t": texts.map(|(_, t)| t) })).await;

    // A change of head (as a promotion leaves them): every score stale.
    let stale = "UPDATE message SET sentiment_model = 'sentiment-20261201-000000', sentiment = 0.5";
    assert_eq!(s.sql_exec(stale).await, 4);
    let other = format!(
        "UPDATE message SET head_input_model = 'another-encoder@1#query' WHERE text = '{}'",
        texts[2].1
    );
    assert_eq!(s.sql_exec(&other).await, 1);
    let j = analyze_job(&s, "{ stale: true }").await;
    assert_eq!(j["result"]["messages"], 4, "{j}");
    assert_eq!(j["result"]["rescored"], 3, "{j}");
    assert_eq!(s.sql_count(&by_head).await, 4);
    // the message analysed anew now keeps this encoder's vector
    assert_eq!(s.sql_count(kept).await, 4);
    let stored = stored_scores(&s).await;
    for a in fresh["analyzeText"].as_array().unwrap() {
        let (score, label) = &stored[a["text"].as_str().unwrap()];
        let want = a["sentiment"]["score"].as_f64().unwrap();
        assert!((score - want).abs() < 2e-3, "{a}: stored {score}");
        assert_eq!(label, a["sentiment"]["label"].as_str().unwrap(), "{a}");
    }

    // Nothing stale: nothing to do. `reanalyze` runs the encoder on all.
    let j = analyze_job(&s, "{ stale: true }").await;
    assert_eq!(j["result"]["messages"], 0, "{j}");
    let j = analyze_job(&s, "{ reanalyze: true }").await;
    assert_eq!(j["result"]["messages"], 4, "{j}");
    assert_eq!(j["result"]["rescored"], 0, "{j}");
}

/// Data arriving for members whose refresh is running (their events,
/// imported while their messages are analysed) is refreshed after that
/// refresh, not beside it: two at once would both run the encoder over the
/// same new messages. Every message is analysed once.
#[tokio::test]
async fn a_refresh_waits_for_the_accounts_running_refresh() {
    use std::fmt::Write;
    let s = with_models().await;
    let n = 500;
    let (mut members, mut messages, mut events) = (
        String::from("openid\n"),
        String::new(),
        String::from("openid,type,at\n"),
    );
    for i in 0..n {
        let _ = writeln!(members, "o_w{i:04}");
        for k in 0..3 {
            let m = json!({ "openid": format!("o_w{i:04}"), "text": format!("面霜很滋润，第{}次回购了", 3 * i + k), "at": "2026-11-20T08:00:00Z" });
            let _ = writeln!(messages, "{m}");
        }
        let _ = writeln!(events, "o_w{i:04},click,2026-11-21T08:00:00Z");
    }
    s.import(ADMIN_KEY, "importMembers", "CSV", &members).await;
    s.import(ADMIN_KEY, "importMessages", "JSONL", &messages)
        .await;
    // The events arrive while the messages' refresh runs.
    let analysing = "SELECT COUNT(*) FROM job_run WHERE kind = 'ANALYZE_TEXTS' AND status = 'RUNNING' \
                     AND progress < 0.5 AND EXISTS (SELECT 1 FROM message WHERE analyzed_at IS NULL)";
    let running = tests::eventually(60, || async {
        (s.sql_count(analysing).await > 0).then_some(())
    })
    .await;
    assert!(running.is_some(), "{}", s.log());
    s.import(ADMIN_KEY, "importEvents", "CSV", &events).await;
    // Done: the events' refresh too (held in memory until the other ends).
    let done = "SELECT COUNT(*) FROM job_run WHERE kind = 'ANALYZE_TEXTS' AND status = 'SUCCEEDED'";
    let busy = "SELECT COUNT(*) FROM job_run WHERE status IN ('QUEUED', 'RUNNING')";
    let idle = tests::eventually(300, || async {
        (s.sql_count(done).await >= 2 && s.sql_count(busy).await == 0).then_some(())
    })
    .await;
    assert!(idle.is_some(), "{}", s.log());
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM message WHERE analyzed_at IS NULL")
            .await,
        0
    );
    let d = s
        .gql(
            "{ jobs(first: 20, kind: ANALYZE_TEXTS) { nodes { status result startedAt finishedAt } } }",
            json!({}),
        )
        .await;
    let jobs = d["jobs"]["nodes"].as_array().unwrap().clone();
    // the members' and messages' refresh (merged, or two) and the events'
    assert!(jobs.len() >= 2, "{jobs:?}");
    let analysed: i64 = jobs
        .iter()
        .map(|j| j["result"]["messages"].as_i64().unwrap())
        .sum();
    assert_eq!(analysed, 3 * n, "a message analysed twice: {jobs:?}");
    let at =
        |j: &Value, f: &str| chrono::DateTime::parse_from_rfc3339(j[f].as_str().unwrap()).unwrap();
    for (i, a) in jobs.iter().enumerate() {
        for b in &jobs[i + 1..] {
            let apart = at(a, "finishedAt") <= at(b, "startedAt")
                || at(b, "finishedAt") <= at(a, "startedAt");
            assert!(apart, "two refreshes ran at once: {a} {b}");
        }
    }
}

/// A change of head whose re-analysis job was lost (the process died
/// between promoting and queueing) leaves stale scores: the next full
/// persona rebuild queues the job, and a refresh of some members scores
/// their stale messages along with the new ones.
#[tokio::test]
async fn scores_a_lost_reanalysis_left_stale_are_caught_up() {
    let s = with_models().await;
    let head = active_sentiment(&s).await["version"]
        .as_str()
        .unwrap()
        .to_owned();
    import_analysed(
        &s,
        &head,
        &[("o_1", "物流很快，包装也好"), ("o_2", "客服一直不回消息")],
    )
    .await;
    let by_head = format!("SELECT COUNT(*) FROM message WHERE sentiment_model = '{head}'");
    let busy = "SELECT COUNT(*) FROM job_run WHERE status IN ('QUEUED', 'RUNNING')";
    let now = chrono::Utc::now().to_rfc3339();

    let lost = "UPDATE message SET sentiment_model = 'sentiment-20261201-000000'";
    assert_eq!(s.sql_exec(lost).await, 2);
    let b = s.run_job("BUILD_PERSONAS", 120).await;
    assert_eq!(b["status"], "SUCCEEDED", "{b}");
    let rescore = b["result"]["rescoreJob"].clone();
    assert!(rescore.is_string(), "{b}");
    let r = s.wait_job(&rescore, 120).await;
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(r["result"]["messages"], 2, "{r}");
    assert_eq!(s.sql_count(&by_head).await, 2);
    // Nothing stale: the next rebuild queues nothing.
    let b = s.run_job("BUILD_PERSONAS", 120).await;
    assert_eq!(b["result"]["rescoreJob"], Value::Null, "{b}");

    // A new message of o_1 re-scores o_1's stale message too, not o_2's.
    let idle = tests::eventually(120, || async {
        (s.sql_count(busy).await == 0).then_some(())
    });
    assert!(idle.await.is_some(), "{}", s.log());
    assert_eq!(s.sql_exec(lost).await, 2);
    let line = json!({ "openid": "o_1", "text": "第二次买了，还是很满意", "at": now });
    s.import(ADMIN_KEY, "importMessages", "JSONL", &line.to_string())
        .await;
    let caught = tests::eventually(120, || async {
        (s.sql_count(&by_head).await == 2).then_some(())
    })
    .await;
    assert!(caught.is_some(), "{}", s.log());
    let still = "SELECT COUNT(*) FROM message m JOIN member u ON u.id = m.member_id \
                 WHERE u.openid = 'o_2' AND m.sentiment_model <> '{head}'";
    assert_eq!(s.sql_count(&still.replace("{head}", &head)).await, 1);
}
