use std::collections::HashSet;

use serde_json::json;
use tests::Server;

#[tokio::test]
async fn paging_visits_every_row_exactly_once() {
    let s = Server::start().await;
    let csv: String = std::iter::once("openid,nickname\n".to_owned())
        .chain((0..57).map(|i| format!("o_page_{i:03},会员{i}\n")))
        .collect();
    assert_eq!(
        s.import(tests::ADMIN_KEY, "importMembers", "CSV", &csv)
            .await["accepted"],
        57
    );
    let q = "query($after: String) { members(first: 10, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { openid } } } }";
    let mut seen = HashSet::new();
    let mut after = serde_json::Value::Null;
    let mut pages = 0;
    loop {
        let d = s.gql(q, json!({ "after": after })).await;
        let m = &d["members"];
        assert_eq!(m["totalCount"], 57);
        for e in m["edges"].as_array().unwrap() {
            assert!(
                seen.insert(e["node"]["openid"].as_str().unwrap().to_owned()),
                "row visited twice: {e}"
            );
        }
        pages += 1;
        if !m["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = m["pageInfo"]["endCursor"].clone();
        assert!(pages < 10, "paging does not terminate");
    }
    assert_eq!(seen.len(), 57);
    assert_eq!(pages, 6);
}

#[tokio::test]
async fn bad_paging_arguments_are_bad_user_input() {
    let s = Server::start().await;
    let body = s
        .err_as(
            Some(tests::ADMIN_KEY),
            "{ members(first: 100000) { totalCount } }",
            json!({}),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "first");
    s.err_as(
        Some(tests::ADMIN_KEY),
        "{ members(first: -1) { totalCount } }",
        json!({}),
        "BAD_USER_INPUT",
    )
    .await;
    let body = s
        .err_as(
            Some(tests::ADMIN_KEY),
            "{ campaigns(after: \"garbage!\") { totalCount } }",
            json!({}),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "after");
    s.err_as(
        Some(tests::ADMIN_KEY),
        "{ campaign(id: \"not-an-id\") { id } }",
        json!({}),
        "BAD_USER_INPUT",
    )
    .await;
}

#[tokio::test]
async fn campaigns_list_newest_first_and_filter_by_status() {
    let s = Server::start().await;
    for name in ["一", "二", "三"] {
        s.gql(
            "mutation($n: String!) { createCampaign(input: { name: $n }) { id } }",
            json!({ "n": name }),
        )
        .await;
    }
    let d = s
        .gql(
            "{ campaigns { totalCount edges { node { name } } } }",
            json!({}),
        )
        .await;
    let names: Vec<&str> = d["campaigns"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["三", "二", "一"]);
    let id = s
        .gql(
            "{ campaigns(first: 1) { edges { node { id } } } }",
            json!({}),
        )
        .await["campaigns"]["edges"][0]["node"]["id"]
        .clone();
    s.gql(
        "mutation($id: ID!) { archiveCampaign(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    let d = s.gql("{ a: campaigns(status: ARCHIVED) { totalCount } d: campaigns(status: DRAFT) { totalCount } }", json!({})).await;
    assert_eq!(d["a"]["totalCount"], 1);
    assert_eq!(d["d"]["totalCount"], 2);
}
