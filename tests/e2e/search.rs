//! Segment previews on the embedded index: exact totals, members and facets
//! against counts computed here; paging; lookalikes; tenancy; erasure.
use serde_json::{Value, json};
use tests::{ADMIN_KEY, Options, Server, error_code};

use crate::audience::{self, PREVIEW, Person};

#[tokio::test]
async fn previews_match_independent_counts_and_page_exactly() {
    let s = Server::start().await;
    let people = audience::people(260, "p");
    audience::load(&s, ADMIN_KEY, &people).await;
    for (name, filter, pred) in audience::cases() {
        let want: Vec<&Person> = people.iter().filter(|p| pred(p)).collect();
        let (total, got, facets) = audience::all_pages(&s, ADMIN_KEY, &filter).await;
        assert_eq!(total as usize, want.len(), "{name}: total");
        assert_eq!(got.len(), want.len(), "{name}: every page together");
        let set: std::collections::BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(set.len(), got.len(), "{name}: no member twice across pages");
        assert_eq!(set, audience::openids(&want), "{name}: members");
        assert_eq!(facets, audience::expected_facets(&want), "{name}: facets");
    }
}

#[tokio::test]
async fn members_come_most_active_first_with_stable_ties() {
    let s = Server::start().await;
    let people = audience::people(120, "a");
    audience::load(&s, ADMIN_KEY, &people).await;
    let d = s
        .gql(
            PREVIEW,
            json!({ "f": { "field": "gender", "op": "EXISTS" }, "first": 120 }),
        )
        .await;
    let edges = d["segmentPreview"]["members"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(edges.len(), 120);
    let key = |e: &Value| {
        (
            e["node"]["persona"]["activity"].as_f64().unwrap_or(0.0),
            e["node"]["id"].as_str().unwrap().to_owned(),
        )
    };
    for w in edges.windows(2) {
        let (a, b) = (key(&w[0]), key(&w[1]));
        assert!(a.0 > b.0 || (a.0 == b.0 && a.1 < b.1), "{a:?} before {b:?}");
    }
    // Members with events are more active than members without.
    let busy = people.iter().filter(|p| p.events > 0).count();
    assert!(busy > 0 && busy < 120);
    assert!(key(&edges[0]).0 > key(&edges[119]).0);
    // Scores are only for lookalikes.
    assert!(edges.iter().all(|e| e["score"].is_null()));
}

#[tokio::test]
async fn bad_previews_are_typed_errors() {
    let s = Server::start().await;
    let cases = [
        (
            json!({ "f": { "field": "colour", "op": "EQ", "value": 1 } }),
            PREVIEW,
            "filter.field",
        ),
        (
            json!({ "f": { "text": "的了，。" } }),
            PREVIEW,
            "filter.text",
        ),
        (
            json!({ "f": { "or": [{ "field": "city", "op": "EQ", "value": "上海" }, { "similarTo": { "text": "护肤" } }] } }),
            PREVIEW,
            "filter",
        ),
        (
            json!({ "f": { "field": "city", "op": "EXISTS" }, "first": 5000 }),
            PREVIEW,
            "first",
        ),
        (
            json!({ "f": { "field": "city", "op": "EXISTS" }, "after": "bm9wZQ" }),
            PREVIEW,
            "after",
        ),
        (
            json!({ "f": { "field": "city", "op": "EXISTS" } }),
            "query($f: SegmentFilter!) { segmentPreview(filter: $f) { facets(fields: [\"nickname\"]) { field } } }",
            "fields[0]",
        ),
        (
            json!({ "f": { "similarTo": { "memberIds": ["00000000-0000-7000-8000-000000000000"] } } }),
            PREVIEW,
            "filter.similarTo.memberIds",
        ),
    ];
    for (vars, q, field) in cases {
        let body = s.gql_as(Some(ADMIN_KEY), q, vars.clone()).await;
        assert_eq!(
            error_code(&body).as_deref(),
            Some("BAD_USER_INPUT"),
            "{vars}: {body}"
        );
        assert_eq!(
            body["errors"][0]["extensions"]["field"], field,
            "{vars}: {body}"
        );
    }
}

#[tokio::test]
async fn accounts_never_see_each_others_members_and_integrations_read() {
    let s = Server::start().await;
    let (_, other) = s.new_account("另一个品牌").await;
    audience::load(&s, ADMIN_KEY, &audience::people(40, "x")).await;
    audience::load(&s, &other, &audience::people(25, "y")).await;
    let everyone = json!({ "field": "gender", "op": "EXISTS" });
    let (total, ids, _) = audience::all_pages(&s, &other, &everyone).await;
    assert_eq!(total, 25);
    assert!(ids.iter().all(|o| o.starts_with('y')));
    let (total, ids, _) = audience::all_pages(&s, ADMIN_KEY, &everyone).await;
    assert_eq!(total, 40);
    assert!(ids.iter().all(|o| o.starts_with('x')));
    // Naming the other account's openids finds nothing.
    let d = s
        .ok_as(
            &other,
            PREVIEW,
            json!({ "f": { "field": "openid", "op": "IN", "value": ["x0001", "x0002"] } }),
        )
        .await;
    assert_eq!(d["segmentPreview"]["total"], 0);
    // An integration key reads previews (and only its account's).
    let integration = s.new_key(&other, "INTEGRATION").await;
    let d = s
        .ok_as(&integration, PREVIEW, json!({ "f": everyone }))
        .await;
    assert_eq!(d["segmentPreview"]["total"], 25);
    // A saved segment answers the same through Segment.preview.
    let d = s
        .ok_as(
            &other,
            "mutation($f: SegmentFilter!) { createSegment(input: { name: \"女性\", filter: $f }) { id preview(first: 3) { total members { edges { node { openid } } } } } }",
            json!({ "f": { "field": "gender", "op": "EQ", "value": "female" } }),
        )
        .await;
    let want = audience::people(25, "y")
        .iter()
        .filter(|p| p.gender == "female")
        .count();
    assert_eq!(d["createSegment"]["preview"]["total"], want);
}

#[tokio::test]
async fn erasure_and_rebuild_keep_the_index_equal_to_the_database() {
    let s = Server::start().await;
    let people = audience::people(30, "e");
    audience::load(&s, ADMIN_KEY, &people).await;
    let everyone = json!({ "field": "gender", "op": "EXISTS" });
    let d = s.gql(PREVIEW, json!({ "f": everyone, "first": 1 })).await;
    assert_eq!(d["segmentPreview"]["total"], 30);
    let first = d["segmentPreview"]["members"]["edges"][0]["node"].clone();
    s.gql(
        "mutation($id: ID!) { deleteMember(id: $id) }",
        json!({ "id": first["id"] }),
    )
    .await;
    // At once: the index no longer counts or returns them.
    let (total, ids, _) = audience::all_pages(&s, ADMIN_KEY, &everyone).await;
    assert_eq!(total, 29);
    assert!(!ids.contains(&first["openid"].as_str().unwrap().to_owned()));
    let d = s
        .gql(
            PREVIEW,
            json!({ "f": { "field": "openid", "op": "EQ", "value": first["openid"] } }),
        )
        .await;
    assert_eq!(d["segmentPreview"]["total"], 0);
    // A full rebuild gives the same answers.
    let job = s.run_job("INDEX_PERSONAS", 60).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(job["result"]["indexed"], 29, "{job}");
    assert_eq!(job["result"]["backend"], "embedded");
    let (total, again, _) = audience::all_pages(&s, ADMIN_KEY, &everyone).await;
    assert_eq!(total, 29);
    assert_eq!(again, ids, "same members in the same order");
    // The index survives a restart (it lives in the data dir).
    assert!(s.dir.path().join("data/index/v1").is_dir());
}

#[tokio::test]
async fn lookalikes_rank_by_similarity_and_leave_the_seeds_out() {
    let s = Server::start_with(Options {
        models: true,
        ..Default::default()
    })
    .await;
    let beauty = [
        "这款面霜很滋润，精华液也好用",
        "口红颜色很正，面膜补水效果明显",
        "防晒霜不油腻，粉底很服帖",
        "卸妆油很温和，护肤步骤简单了",
    ];
    let travel = [
        "周末去三亚旅游，海景酒店太美了",
        "机票买好了，下个月去云南自驾",
        "这次去日本玩了一周，民宿很干净",
    ];
    let mut csv = String::from("openid,city\n");
    let mut msgs = Vec::new();
    let now = chrono::Utc::now().to_rfc3339();
    for (i, t) in beauty.iter().enumerate() {
        csv.push_str(&format!("b{i},上海\n"));
        msgs.push(json!({ "openid": format!("b{i}"), "text": t, "at": now }).to_string());
    }
    for (i, t) in travel.iter().enumerate() {
        csv.push_str(&format!("t{i},上海\n"));
        msgs.push(json!({ "openid": format!("t{i}"), "text": t, "at": now }).to_string());
    }
    s.import(ADMIN_KEY, "importMembers", "CSV", &csv).await;
    s.import(ADMIN_KEY, "importMessages", "JSONL", &msgs.join("\n"))
        .await;
    audience::settle(&s, ADMIN_KEY).await;
    let job = s.run_job("ANALYZE_TEXTS", 300).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    audience::settle(&s, ADMIN_KEY).await;
    let ids = s
        .gql(
            "{ members(first: 50) { edges { node { id openid } } } }",
            json!({}),
        )
        .await;
    let id_of = |o: &str| {
        ids["members"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"]["openid"] == o)
            .unwrap()["node"]["id"]
            .clone()
    };
    let q = "query($f: SegmentFilter!) { segmentPreview(filter: $f, first: 20) { total members { edges { score node { openid } } } } }";
    let ranked = |d: &Value| -> Vec<(String, f64)> {
        d["segmentPreview"]["members"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["node"]["openid"].as_str().unwrap().to_owned(),
                    e["score"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    // Seeded by one beauty fan: the other beauty fans first, the seed left out.
    let d = s
        .gql(
            q,
            json!({ "f": { "and": [
                { "field": "city", "op": "EQ", "value": "上海" },
                { "similarTo": { "memberIds": [id_of("b0")] } }
            ]}}),
        )
        .await;
    let r = ranked(&d);
    assert_eq!(r.len(), 6, "{r:?}");
    assert!(r.iter().all(|(o, _)| o != "b0"));
    assert!(r.windows(2).all(|w| w[0].1 >= w[1].1), "{r:?}");
    let top: Vec<&str> = r[..3].iter().map(|(o, _)| o.as_str()).collect();
    assert!(top.iter().all(|o| o.starts_with('b')), "{r:?}");
    // minScore cuts the list: only members at or above it, total agrees.
    let cut = (r[2].1 + r[3].1) / 2.0;
    let d = s
        .gql(
            q,
            json!({ "f": { "similarTo": { "memberIds": [id_of("b0")], "minScore": cut } } }),
        )
        .await;
    assert_eq!(d["segmentPreview"]["total"], 3, "{d}");
    assert!(ranked(&d).iter().all(|(_, sc)| *sc >= cut));
    // Seeded by a text.
    let d = s
        .gql(
            q,
            json!({ "f": { "similarTo": { "text": "出门旅行订酒店" } } }),
        )
        .await;
    let r = ranked(&d);
    assert_eq!(r.len(), 7);
    assert!(r[0].0.starts_with('t'), "{r:?}");
}
