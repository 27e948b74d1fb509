//! A brand's own sentiment labels: corrections, imported examples, and a
//! sentiment head retrained for the account on them, used for its texts
//! only.
use serde_json::{Value, json};
use tests::{ADMIN_KEY, Options, Server, error_code};

async fn with_models() -> Server {
    Server::start_with(Options {
        models: true,
        ..Default::default()
    })
    .await
}

/// A horror game's players: "scary" is praise there, which reviews of hotels
/// and shops do not teach.
const SCARY: &[&str] = &[
    "太吓人了",
    "吓得我不敢关灯",
    "吓到我尖叫",
    "半夜玩吓得我一身冷汗",
    "恐怖到我手心出汗",
    "吓得我把耳机扔了",
    "心跳快到一百八",
    "吓得我不敢回头",
    "全程头皮发麻",
    "吓得我整晚睡不着",
];
const PARTS: &[&str] = &[
    "第三章的医院",
    "新地图的地下室",
    "雨夜的那段走廊",
    "结局前的追逐战",
    "双人模式的老宅",
    "最新的万圣节关卡",
    "那个废弃学校",
    "钟楼那一段",
    "开局的停车场",
    "隐藏结局",
    "电梯那一关",
    "午夜的森林",
];
const BROKEN: &[&str] = &[
    "一直闪退",
    "卡在加载界面进不去",
    "存档全丢了",
    "掉帧严重根本没法玩",
    "充值了道具没到账",
    "更新以后黑屏",
    "客服一直不回复",
    "匹配半小时匹配不到人",
    "bug多到离谱",
    "服务器天天维护",
];

/// `label,text` rows: scary parts as POSITIVE, broken ones as NEGATIVE.
fn examples_csv() -> String {
    let mut csv = String::from("label,text\n");
    for (i, part) in PARTS.iter().enumerate() {
        for k in 0..5 {
            let s = SCARY[(i + 3 * k) % SCARY.len()];
            csv.push_str(&format!("POSITIVE,{part}{s}\n"));
            let b = BROKEN[(i + 3 * k) % BROKEN.len()];
            csv.push_str(&format!("NEGATIVE,{part}{b}\n"));
        }
    }
    csv
}

/// Praise in the game's own words, none of it among the examples.
const PROBES: &[&str] = &[
    "今晚的新副本太吓人了，吓得我尖叫",
    "这个鬼屋关卡吓得我不敢关灯",
    "玩到凌晨吓得我一身冷汗",
    "古堡那段吓得我把耳机扔了",
];

async fn analyze(s: &Server, key: &str) -> Vec<Value> {
    s.ok_as(
        key,
        "query($t: [String!]!) { analyzeText(texts: $t) { sentiment { label score model } } }",
        json!({ "t": PROBES }),
    )
    .await["analyzeText"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["sentiment"].clone())
        .collect()
}

fn mean_score(v: &[Value]) -> f64 {
    v.iter().map(|s| s["score"].as_f64().unwrap()).sum::<f64>() / v.len() as f64
}

/// An account retrains a head on its own examples: the head is recorded as
/// the account's, reads its texts (and only its texts) the brand's way, and
/// the account can go back to the shared head.
#[tokio::test]
async fn an_accounts_examples_train_a_head_that_reads_only_its_texts() {
    let s = with_models().await;
    let (_, brand) = s.new_account("恐怖游戏").await;
    let shared_before = analyze(&s, &brand).await;
    let other_before = analyze(&s, ADMIN_KEY).await;
    assert!(
        mean_score(&shared_before) < 0.5,
        "the shared head should read these as complaints: {shared_before:?}"
    );

    let r = s
        .import(&brand, "importSentimentExamples", "CSV", &examples_csv())
        .await;
    assert_eq!(r["accepted"], 120, "{r}");
    // and one player's message, corrected: the head learns from them too
    s.import(&brand, "importMembers", "CSV", "openid\no_p\n")
        .await;
    let line = json!({ "openid": "o_p", "text": "第二关一直卡住，客服也不理人", "at": chrono::Utc::now().to_rfc3339() });
    s.import(&brand, "importMessages", "JSONL", &line.to_string())
        .await;
    let d = s
        .ok_as(
            &brand,
            "{ members { edges { node { id messages { edges { node { id } } } } } } }",
            json!({}),
        )
        .await;
    let player = d["members"]["edges"][0]["node"]["id"].clone();
    let msg = d["members"]["edges"][0]["node"]["messages"]["edges"][0]["node"]["id"].clone();
    s.ok_as(
        &brand,
        "mutation($id: ID!) { correctMessageSentiment(id: $id, label: NEGATIVE) { id } }",
        json!({ "id": msg }),
    )
    .await;
    let counts = s
        .ok_as(
            &brand,
            "{ sentimentExampleCounts { positive negative neutral neededPerLabel } }",
            json!({}),
        )
        .await;
    assert_eq!(
        counts["sentimentExampleCounts"],
        json!({ "positive": 60, "negative": 61, "neutral": 0, "neededPerLabel": 50 })
    );

    // A tenant may retrain its own head (not the shared one).
    let d = s
        .ok_as(
            &brand,
            r#"mutation { enqueueJob(input: { kind: RETRAIN_SENTIMENT, params: { accountExamples: true } }) { id } }"#,
            json!({}),
        )
        .await;
    let first_retrain = d["enqueueJob"]["id"].clone();
    let j = s.wait_job_as(&brand, &first_retrain, 900).await;
    assert_eq!(j["status"], "SUCCEEDED", "{j}");
    let res = &j["result"];
    assert_eq!(res["promoted"], true, "{res}");
    let held = &res["metrics"]["accountHeldOut"];
    assert!(held["positive"].as_u64().unwrap() > 0, "{res}");
    assert!(
        held["balancedAccuracy"].as_f64().unwrap()
            > res["previous"]["accountHeldOut"]["balancedAccuracy"]
                .as_f64()
                .unwrap(),
        "{res}"
    );
    assert_eq!(
        res["metrics"]["accountExamples"]["trained"]["positive"]
            .as_u64()
            .unwrap()
            + held["positive"].as_u64().unwrap(),
        60
    );
    let version = res["version"].as_str().unwrap().to_owned();
    let file = s
        .dir
        .path()
        .join(format!("data/models/sentiment/{version}.onnx"));
    assert!(file.exists(), "{}", file.display());

    let list = |key: String| {
        let s = &s;
        async move {
            s.ok_as(
                &key,
                "{ modelVersions(kind: SENTIMENT) { id version active shared inUse } }",
                json!({}),
            )
            .await["modelVersions"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let mine = list(brand.clone()).await;
    let own = mine
        .iter()
        .find(|v| v["version"] == version.as_str())
        .unwrap();
    assert_eq!(
        (
            own["shared"].clone(),
            own["active"].clone(),
            own["inUse"].clone()
        ),
        (json!(false), json!(true), json!(true)),
        "{mine:?}"
    );
    let shared = mine
        .iter()
        .find(|v| v["shared"] == true && v["active"] == true)
        .unwrap()
        .clone();
    assert_eq!(shared["inUse"], false, "{mine:?}");
    // another account neither sees nor uses it
    let theirs = list(ADMIN_KEY.to_owned()).await;
    assert!(
        theirs.iter().all(|v| v["version"] != version.as_str()),
        "{theirs:?}"
    );

    let tuned = analyze(&s, &brand).await;
    // each score names the head that gave it: the account's own, and the
    // shared one before it and for everyone else
    assert!(
        tuned.iter().all(|t| t["model"] == version.as_str()),
        "{tuned:?}"
    );
    assert!(
        shared_before
            .iter()
            .chain(&other_before)
            .all(|t| t["model"] == shared["version"]),
        "{shared_before:?} {other_before:?}"
    );
    assert!(
        mean_score(&tuned) > mean_score(&shared_before) + 0.2,
        "before {shared_before:?}, after {tuned:?}"
    );
    assert!(
        tuned.iter().filter(|t| t["label"] == "POSITIVE").count() >= 3,
        "{tuned:?}"
    );
    let other_after = analyze(&s, ADMIN_KEY).await;
    assert_eq!(
        other_before, other_after,
        "another account's texts read as before"
    );
    let heads =
        || async { tests::metric(&s.metrics().await, "lingxi_account_sentiment_heads_loaded") };
    assert_eq!(heads().await, Some(1.0));

    // A process on another machine (its own data folder, no copy of the
    // files) reads the head from the bytes stored with its registry row.
    let moved = file.with_extension("moved");
    std::fs::rename(&file, &moved).unwrap();
    let elsewhere = Server::start_with(Options {
        models: true,
        extra_env: vec![("LINGXI_DATABASE_URL".into(), s.database_url.clone())],
        ..Default::default()
    })
    .await;
    assert_eq!(analyze(&elsewhere, &brand).await, tuned);
    drop(elsewhere);
    std::fs::rename(&moved, &file).unwrap();

    // back to the shared head
    let d = s
        .ok_as(
            &brand,
            "mutation($id: ID!) { activateModelVersion(id: $id) { version inUse } }",
            json!({ "id": shared["id"] }),
        )
        .await;
    assert_eq!(d["activateModelVersion"]["inUse"], true, "{d}");
    assert_eq!(analyze(&s, &brand).await, shared_before);
    // and to its own again
    let activate = "mutation($id: ID!) { activateModelVersion(id: $id) { version } }";
    s.ok_as(&brand, activate, json!({ "id": own["id"] })).await;
    assert_eq!(analyze(&s, &brand).await, tuned);
    // every change of head re-reads the stored messages (the promotion, the
    // two switches); choosing the head in use again changes nothing
    assert!(res["reanalysisJob"].is_string(), "{res}");
    // whole-account jobs (refreshes of some members take `stale` too)
    let reanalyses = "SELECT COUNT(*) FROM job_run WHERE kind = 'ANALYZE_TEXTS' AND CAST(params AS TEXT) LIKE '%stale%' AND CAST(params AS TEXT) NOT LIKE '%memberIds%'";
    assert_eq!(s.sql_count(reanalyses).await, 3);
    s.ok_as(&brand, activate, json!({ "id": own["id"] })).await;
    assert_eq!(s.sql_count(reanalyses).await, 3);

    // Erasing the player forgets the head that learned from their label
    // (row and file): the account reads with the shared head again, and a
    // retrain on the 120 examples left is queued.
    s.ok_as(
        &brand,
        "mutation($id: ID!) { deleteMember(id: $id) }",
        json!({ "id": player }),
    )
    .await;
    let after = list(brand.clone()).await;
    assert!(after.iter().all(|v| v["shared"] == true), "{after:?}");
    assert!(!file.exists(), "{}", file.display());
    assert_eq!(s.sql_count("SELECT COUNT(*) FROM model_file").await, 0);
    assert_eq!(heads().await, Some(0.0));
    assert_eq!(analyze(&s, &brand).await, shared_before);
    let d = s
        .ok_as(
            &brand,
            "{ jobs(kind: RETRAIN_SENTIMENT) { edges { node { id params } } } }",
            json!({}),
        )
        .await;
    let retrains: Vec<&Value> = d["jobs"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["id"] != first_retrain)
        .collect();
    assert_eq!(retrains.len(), 1, "{d}");
    assert_eq!(
        retrains[0]["node"]["params"],
        json!({ "accountExamples": true })
    );
    // and the stored scores of the forgotten head are read again
    assert_eq!(s.sql_count(reanalyses).await, 4);
    // Both were committed with the erasure and queued after it, before it
    // answered.
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM job_run WHERE staged = TRUE")
            .await,
        0
    );
}

/// Too few examples: the job fails at once and says how many are needed;
/// the shared head can still only be retrained by the operator.
#[tokio::test]
async fn retraining_on_too_few_examples_fails_and_says_why() {
    let s = with_models().await;
    let (_, brand) = s.new_account("小店").await;
    let r = s
        .import(
            &brand,
            "importSentimentExamples",
            "CSV",
            "label,text\n1,很好吃\n0,太难吃了\n",
        )
        .await;
    assert_eq!(r["accepted"], 2, "{r}");
    let body = s
        .gql_as(
            Some(&brand),
            "mutation { enqueueJob(input: { kind: RETRAIN_SENTIMENT }) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body).as_deref(), Some("FORBIDDEN"), "{body}");
    let d = s
        .ok_as(
            &brand,
            r#"mutation { enqueueJob(input: { kind: RETRAIN_SENTIMENT, params: { accountExamples: true } }) { id } }"#,
            json!({}),
        )
        .await;
    let j = s.wait_job_as(&brand, &d["enqueueJob"]["id"], 120).await;
    assert_eq!(j["status"], "FAILED", "{j}");
    assert_eq!(j["attempts"], 1, "{j}");
    let e = j["error"].as_str().unwrap();
    assert!(e.contains("50") && e.contains("1 and 1"), "{e}");
    let body = s
        .gql_as(
            Some(&brand),
            r#"mutation { enqueueJob(input: { kind: RETRAIN_SENTIMENT, params: { accountExamples: "yes" } }) { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        error_code(&body).as_deref(),
        Some("BAD_USER_INPUT"),
        "{body}"
    );
    // a weekly retrain of the brand's own head; an edit that drops
    // `accountExamples` would retrain the shared head: FORBIDDEN, while a
    // malformed edit is BAD_USER_INPUT, as on enqueueJob
    let d = s
        .ok_as(
            &brand,
            r#"mutation { createJobSchedule(input: { name: "每周重训", kind: RETRAIN_SENTIMENT, cron: "0 2 * * SUN", params: { accountExamples: true } }) { id } }"#,
            json!({}),
        )
        .await;
    let id = d["createJobSchedule"]["id"].clone();
    let upd = "mutation($id: ID!, $p: JSON) { updateJobSchedule(id: $id, input: { params: $p }) { params } }";
    for (params, code) in [
        (json!({}), "FORBIDDEN"),
        (json!({ "accountExamples": "yes" }), "BAD_USER_INPUT"),
    ] {
        let body = s
            .gql_as(Some(&brand), upd, json!({ "id": id, "p": params }))
            .await;
        assert_eq!(error_code(&body).as_deref(), Some(code), "{body}");
    }
    let d = s
        .ok_as(&brand, "{ jobSchedules { name params } }", json!({}))
        .await;
    let mine = d["jobSchedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "每周重训")
        .unwrap();
    assert_eq!(mine["params"], json!({ "accountExamples": true }), "{d}");
}

/// Imports take the common label spellings, reject bad rows by line and
/// keep the good ones, and relabel a text imported again.
#[tokio::test]
async fn example_imports_reject_bad_rows_and_relabel_by_text() {
    let s = Server::start().await;
    let csv = "label,review\n1,物流很快\n差评,包装破了\nmaybe,还行吧\n中性,今天到货\nNEGATIVE,\n";
    let r = s
        .import(ADMIN_KEY, "importSentimentExamples", "CSV", csv)
        .await;
    assert_eq!(r["accepted"], 3, "{r}");
    assert_eq!(r["rejectedCount"], 2, "{r}");
    let lines: Vec<i64> = r["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, vec![4, 6], "{r}");
    assert!(
        r["rejected"][0]["message"]
            .as_str()
            .unwrap()
            .contains("POSITIVE"),
        "{r}"
    );
    // again, with one label changed: nothing added, one relabelled
    let r = s
        .import(
            ADMIN_KEY,
            "importSentimentExamples",
            "JSONL",
            "{\"label\":\"POSITIVE\",\"text\":\"包装破了\"}\n{\"label\":1,\"text\":\"物流很快\"}\n",
        )
        .await;
    assert_eq!(r["accepted"], 2, "{r}");
    let d = s
        .gql(
            "{ sentimentExamples(first: 10) { totalCount edges { node { text label source heldOut } } } }",
            json!({}),
        )
        .await;
    assert_eq!(d["sentimentExamples"]["totalCount"], 3, "{d}");
    let label_of = |t: &str| {
        d["sentimentExamples"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"]["text"] == t)
            .map(|e| e["node"]["label"].clone())
    };
    assert_eq!(label_of("包装破了"), Some(json!("POSITIVE")));
    assert_eq!(label_of("今天到货"), Some(json!("NEUTRAL")));
    assert_eq!(
        d["sentimentExamples"]["edges"][0]["node"]["source"],
        "IMPORT"
    );
}

/// A corrected message shows its correction, becomes an example, and is
/// forgotten with its member.
#[tokio::test]
async fn a_corrected_message_shows_its_label_and_is_erased_with_its_member() {
    let s = Server::start().await;
    s.import(ADMIN_KEY, "importMembers", "CSV", "openid\no_a\n")
        .await;
    let line = json!({ "openid": "o_a", "text": "这次的活动也太吓人了", "at": chrono::Utc::now().to_rfc3339() });
    s.import(ADMIN_KEY, "importMessages", "JSONL", &line.to_string())
        .await;
    let d = s
        .gql(
            "{ members { edges { node { id messages { edges { node { id sentimentLabel sentimentCorrected } } } } } } }",
            json!({}),
        )
        .await;
    let member = d["members"]["edges"][0]["node"]["id"].clone();
    let msg = d["members"]["edges"][0]["node"]["messages"]["edges"][0]["node"].clone();
    assert_eq!(msg["sentimentCorrected"], false);
    let q = "mutation($id: ID!, $l: SentimentLabel) { correctMessageSentiment(id: $id, label: $l) { sentimentLabel sentimentCorrected } }";
    let d = s.gql(q, json!({ "id": msg["id"], "l": "POSITIVE" })).await;
    assert_eq!(
        d["correctMessageSentiment"],
        json!({ "sentimentLabel": "POSITIVE", "sentimentCorrected": true })
    );
    let ex = s
        .gql(
            "{ sentimentExamples { totalCount edges { node { text label source messageId } } } }",
            json!({}),
        )
        .await;
    assert_eq!(ex["sentimentExamples"]["totalCount"], 1);
    assert_eq!(
        ex["sentimentExamples"]["edges"][0]["node"]["source"],
        "CORRECTION"
    );
    assert_eq!(
        ex["sentimentExamples"]["edges"][0]["node"]["messageId"],
        msg["id"]
    );
    // a forged id and another account's message: NOT_FOUND, nothing changes
    let (_, other) = s.new_account("别家").await;
    let body = s
        .gql_as(Some(&other), q, json!({ "id": msg["id"], "l": "NEGATIVE" }))
        .await;
    assert_eq!(error_code(&body).as_deref(), Some("NOT_FOUND"), "{body}");
    let body = s
        .gql_as(Some(ADMIN_KEY), q, json!({ "id": "x", "l": "NEGATIVE" }))
        .await;
    assert_eq!(
        error_code(&body).as_deref(),
        Some("BAD_USER_INPUT"),
        "{body}"
    );
    // cleared: the model's label again (none here: models off), no example
    let d = s.gql(q, json!({ "id": msg["id"], "l": null })).await;
    assert_eq!(
        d["correctMessageSentiment"]["sentimentCorrected"], false,
        "{d}"
    );
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM sentiment_example").await,
        0
    );
    // corrected again, then the member is erased: the example goes too
    s.gql(q, json!({ "id": msg["id"], "l": "NEGATIVE" })).await;
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM sentiment_example").await,
        1
    );
    s.gql(
        "mutation($id: ID!) { deleteMember(id: $id) }",
        json!({ "id": member }),
    )
    .await;
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM sentiment_example").await,
        0
    );
}

/// The review queue lists analysed messages whose text has no label yet,
/// least sure first, one per text, and only the account's own.
#[tokio::test]
async fn the_review_queue_puts_the_least_sure_unlabelled_texts_first() {
    let s = Server::start().await;
    s.import(ADMIN_KEY, "importMembers", "CSV", "openid\no_a\no_b\n")
        .await;
    let at = chrono::Utc::now();
    let lines: Vec<String> = [
        ("o_a", "很好"),
        ("o_a", "一般般"),
        ("o_b", "一般般"),
        ("o_a", "太差了"),
        ("o_a", "还行吧"),
        ("o_a", "没分析"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (who, t))| {
        let at = (at + chrono::Duration::seconds(i as i64)).to_rfc3339();
        json!({ "openid": who, "text": t, "at": at }).to_string()
    })
    .collect();
    let r = s
        .import(ADMIN_KEY, "importMessages", "JSONL", &lines.join("\n"))
        .await;
    assert_eq!(r["accepted"], 6, "{r}");
    // scores as analysis would leave them (models are off here)
    for (text, p, n) in [
        ("很好", 0.9, 1),
        ("一般般", 0.52, 2),
        ("太差了", 0.1, 1),
        ("还行吧", 0.45, 1),
    ] {
        let q = format!("UPDATE message SET sentiment = {p} WHERE text = '{text}'");
        assert_eq!(s.sql_exec(&q).await, n);
    }
    let q = "query($n: Int) { sentimentReviewQueue(first: $n) { id text } }";
    let texts = |d: &Value| -> Vec<String> {
        d["sentimentReviewQueue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let d = s.gql(q, json!({ "n": 20 })).await;
    // 0.10 and 0.90 are equally sure: the newer message (higher id) first;
    // the two 一般般 are one entry
    assert_eq!(texts(&d), ["一般般", "还行吧", "太差了", "很好"], "{d}");
    let d = s.gql(q, json!({ "n": 2 })).await;
    assert_eq!(texts(&d), ["一般般", "还行吧"]);
    // SAMPLE: the same texts in a stable order that does not follow the
    // score (a draw for retraining)
    let sq = "{ sentimentReviewQueue(first: 20, order: SAMPLE) { text } }";
    let sample = texts(&s.gql(sq, json!({})).await);
    let mut sorted = sample.clone();
    sorted.sort();
    let mut want = ["一般般", "还行吧", "太差了", "很好"];
    want.sort();
    assert_eq!(sorted, want, "{sample:?}");
    assert_eq!(texts(&s.gql(sq, json!({})).await), sample);
    // a text imported as an example leaves the queue
    s.import(
        ADMIN_KEY,
        "importSentimentExamples",
        "CSV",
        "label,text\nNEUTRAL,还行吧\n",
    )
    .await;
    let d = s.gql(q, json!({ "n": 20 })).await;
    assert_eq!(texts(&d), ["一般般", "太差了", "很好"], "{d}");
    // correcting one message labels its text: both 一般般 leave
    let id = d["sentimentReviewQueue"][0]["id"].clone();
    s.gql(
        "mutation($id: ID!) { correctMessageSentiment(id: $id, label: NEUTRAL) { id } }",
        json!({ "id": id }),
    )
    .await;
    let d = s.gql(q, json!({ "n": 20 })).await;
    assert_eq!(texts(&d), ["太差了", "很好"]);
    // another account sees none of them
    let (_, other) = s.new_account("别家").await;
    let d = s.ok_as(&other, q, json!({ "n": 20 })).await;
    assert_eq!(d["sentimentReviewQueue"], json!([]));
    for n in [0, 101] {
        let body = s.gql_as(Some(ADMIN_KEY), q, json!({ "n": n })).await;
        assert_eq!(
            error_code(&body).as_deref(),
            Some("BAD_USER_INPUT"),
            "{body}"
        );
    }
}
