use serde_json::json;
use tests::{ADMIN_KEY, Server};

/// `deleteMember` erases the member and everything about them.
#[tokio::test]
async fn delete_member_erases_them_everywhere() {
    let s = Server::start().await;
    s.import(
        ADMIN_KEY,
        "importMembers",
        "CSV",
        "openid,nickname\no_gone,要删除的人\no_stay,留下的人\n",
    )
    .await;
    s.import(
        ADMIN_KEY,
        "importEvents",
        "CSV",
        "openid,type,at\no_gone,click,2026-11-01T08:00:00Z\no_stay,click,2026-11-01T08:00:00Z\n",
    )
    .await;
    s.import(ADMIN_KEY, "importMessages", "JSONL", "{\"openid\":\"o_gone\",\"kind\":\"chat\",\"text\":\"我的手机号是13800000000\",\"at\":\"2026-11-01T08:00:00Z\"}\n{\"openid\":\"o_stay\",\"text\":\"很好用\",\"at\":\"2026-11-01T08:00:00Z\"}").await;
    s.import(
        ADMIN_KEY,
        "importRelations",
        "CSV",
        "openid,friendOpenid\no_gone,o_stay\no_stay,o_gone\no_stay,o_other\n",
    )
    .await;
    let d = s
        .gql("{ members { edges { node { id openid } } } }", json!({}))
        .await;
    let gone = d["members"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["openid"] == "o_gone")
        .unwrap()["node"]["id"]
        .clone();

    let r = s
        .gql(
            "mutation($id: ID!) { deleteMember(id: $id) }",
            json!({ "id": gone }),
        )
        .await;
    assert_eq!(r["deleteMember"], true);
    assert!(
        s.gql(
            "query($id: ID!) { member(id: $id) { id } }",
            json!({ "id": gone })
        )
        .await["member"]
            .is_null()
    );
    s.err_as(
        Some(ADMIN_KEY),
        "mutation($id: ID!) { deleteMember(id: $id) }",
        json!({ "id": gone }),
        "NOT_FOUND",
    )
    .await;

    let id = gone.as_str().unwrap();
    let uuid_lit = if tests::backend() == "postgres" {
        format!("'{id}'")
    } else {
        format!("X'{}'", id.replace('-', ""))
    };
    for table in [
        "event",
        "message",
        "relation",
        "persona",
        "delivery",
        "member_touch",
    ] {
        let n = s
            .sql_count(&format!(
                "SELECT COUNT(*) FROM {table} WHERE member_id = {uuid_lit}"
            ))
            .await;
        assert_eq!(n, 0, "{table} still holds the erased member");
    }
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM relation WHERE friend_openid = 'o_gone'")
            .await,
        0
    );
    assert_eq!(
        s.sql_count("SELECT COUNT(*) FROM message WHERE text LIKE '%13800000000%'")
            .await,
        0
    );
    // The other member keeps their data.
    let d = s.gql("{ members { totalCount edges { node { openid events { totalCount } messages { totalCount } friends } } } }", json!({})).await;
    assert_eq!(d["members"]["totalCount"], 1);
    let stay = &d["members"]["edges"][0]["node"];
    assert_eq!(stay["events"]["totalCount"], 1);
    assert_eq!(stay["messages"]["totalCount"], 1);
    assert_eq!(stay["friends"], json!(["o_other"]));
}

#[tokio::test]
async fn record_events_is_all_or_nothing_and_idempotent() {
    let s = Server::start().await;
    s.import(ADMIN_KEY, "importMembers", "CSV", "openid\no_1\no_2\n")
        .await;
    let q = "mutation($e: [EventInput!]!) { recordEvents(events: $e) }";
    let good = json!({ "openid": "o_1", "type": "click", "at": "2026-11-20T10:00:00Z" });
    let body = s
        .err_as(
            Some(ADMIN_KEY),
            q,
            json!({ "e": [good, { "openid": "o_missing", "type": "view" }] }),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "events[1]");
    let body = s
        .err_as(
            Some(ADMIN_KEY),
            q,
            json!({ "e": [{ "openid": "o_1", "type": "Not A Type!" }] }),
            "BAD_USER_INPUT",
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["field"], "events[0].type");
    let count = "{ members(first: 1) { edges { node { events { totalCount edges { node { type at } } } } } } }";
    assert_eq!(
        s.gql(count, json!({})).await["members"]["edges"][0]["node"]["events"]["totalCount"],
        0
    );

    assert_eq!(s.gql(q, json!({ "e": [good] })).await["recordEvents"], 1);
    s.gql(q, json!({ "e": [good] })).await;
    let d = s.gql(count, json!({})).await;
    assert_eq!(
        d["members"]["edges"][0]["node"]["events"]["totalCount"], 1,
        "the same event twice is stored once"
    );

    // unsubscribe flips the member's subscription.
    s.gql(
        q,
        json!({ "e": [{ "openid": "o_2", "type": "unsubscribe" }] }),
    )
    .await;
    let d = s
        .gql(
            "{ members { edges { node { openid subscribed } } } }",
            json!({}),
        )
        .await;
    assert_eq!(d["members"]["edges"][1]["node"]["subscribed"], false);
    assert_eq!(d["members"]["edges"][0]["node"]["subscribed"], true);
}
