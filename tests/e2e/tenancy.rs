use serde_json::json;
use tests::Server;

/// Another account sees nothing of ours and changes nothing, by id or by list.
#[tokio::test]
async fn another_account_cannot_read_or_change_our_data() {
    let s = Server::start().await;
    let members = "openid,nickname,city\no_a1,小雨,上海\no_a2,阿杰,北京\n";
    s.import(tests::ADMIN_KEY, "importMembers", "CSV", members)
        .await;
    let seg = s.gql(
        "mutation { createSegment(input: { name: \"上海\", filter: { field: \"city\", op: EQ, value: \"上海\" } }) { id } }",
        json!({}),
    )
    .await["createSegment"]["id"].clone();
    let content = s.gql("mutation { createContent(input: { title: \"t\", body: \"b\", variants: [\"v1\"] }) { id variants { id } } }", json!({})).await;
    let content_id = content["createContent"]["id"].clone();
    let variant_id = content["createContent"]["variants"][0]["id"].clone();
    let camp = s
        .gql(
            "mutation { createCampaign(input: { name: \"ours\" }) { id } }",
            json!({}),
        )
        .await["createCampaign"]["id"]
        .clone();
    let member = s
        .gql("{ members { edges { node { id } } } }", json!({}))
        .await["members"]["edges"][0]["node"]["id"]
        .clone();

    let (_, other) = s.new_account("竞品").await;
    // By id: null, as if it did not exist.
    for (q, field) in [
        ("query($id: ID!) { campaign(id: $id) { id } }", "campaign"),
        ("query($id: ID!) { content(id: $id) { id } }", "content"),
        ("query($id: ID!) { member(id: $id) { id } }", "member"),
        ("query($id: ID!) { segment(id: $id) { id } }", "segment"),
    ] {
        let id = match field {
            "campaign" => &camp,
            "content" => &content_id,
            "member" => &member,
            _ => &seg,
        };
        let d = s.ok_as(&other, q, json!({ "id": id })).await;
        assert!(d[field].is_null(), "{field} leaked: {d}");
    }
    // By list: empty.
    let d = s.ok_as(&other, "{ campaigns { totalCount } contents { totalCount } members { totalCount } segments { totalCount } }", json!({})).await;
    for f in ["campaigns", "contents", "members", "segments"] {
        assert_eq!(d[f]["totalCount"], 0, "{f} leaked");
    }
    // Changes: NOT_FOUND or BAD_USER_INPUT, and nothing changed.
    s.err_as(
        Some(&other),
        "mutation($id: ID!) { updateCampaign(id: $id, input: { name: \"hacked\" }) { id } }",
        json!({ "id": camp }),
        "NOT_FOUND",
    )
    .await;
    s.err_as(
        Some(&other),
        "mutation($id: ID!) { archiveCampaign(id: $id) { id } }",
        json!({ "id": camp }),
        "NOT_FOUND",
    )
    .await;
    s.err_as(
        Some(&other),
        "mutation($id: ID!) { deleteMember(id: $id) }",
        json!({ "id": member }),
        "NOT_FOUND",
    )
    .await;
    s.err_as(
        Some(&other),
        "mutation($id: ID!) { approveContentVariant(id: $id, approved: false) { id } }",
        json!({ "id": variant_id }),
        "NOT_FOUND",
    )
    .await;
    s.err_as(
        Some(&other),
        "mutation($id: ID!) { createCampaign(input: { name: \"x\", segmentId: $id }) { id } }",
        json!({ "id": seg }),
        "BAD_USER_INPUT",
    )
    .await;
    s.err_as(
        Some(&other),
        "mutation($id: ID!) { createCampaign(input: { name: \"x\", contentIds: [$id] }) { id } }",
        json!({ "id": content_id }),
        "BAD_USER_INPUT",
    )
    .await;
    // Our openids are unknown to them.
    s.err_as(
        Some(&other),
        "mutation { recordEvents(events: [{ openid: \"o_a1\", type: \"click\" }]) }",
        json!({}),
        "BAD_USER_INPUT",
    )
    .await;
    let r = s
        .import(
            &other,
            "importEvents",
            "CSV",
            "openid,type,at\no_a1,click,2026-11-01T00:00:00Z\n",
        )
        .await;
    assert_eq!(r["accepted"], 0);

    let d = s
        .gql(
            "query($id: ID!) { campaign(id: $id) { name status } }",
            json!({ "id": camp }),
        )
        .await;
    assert_eq!(d["campaign"]["name"], "ours");
    assert_eq!(d["campaign"]["status"], "DRAFT");
    let d = s
        .gql(
            "query($id: ID!, $cid: ID!) { member(id: $id) { openid } content(id: $cid) { variants { approved } } }",
            json!({ "id": member, "cid": content_id }),
        )
        .await;
    assert_eq!(d["member"]["openid"], "o_a1");
    assert_eq!(d["content"]["variants"][0]["approved"], true);
    assert_eq!(
        s.gql("{ members { totalCount } }", json!({})).await["members"]["totalCount"],
        2
    );
}

/// The same openid in two accounts is two different members.
#[tokio::test]
async fn openids_are_unique_per_account_not_globally() {
    let s = Server::start().await;
    let (_, other) = s.new_account("B").await;
    s.import(
        tests::ADMIN_KEY,
        "importMembers",
        "CSV",
        "openid,city\no_same,上海\n",
    )
    .await;
    s.import(&other, "importMembers", "CSV", "openid,city\no_same,北京\n")
        .await;
    let a = s
        .gql("{ members { edges { node { city } } } }", json!({}))
        .await;
    let b = s
        .ok_as(&other, "{ members { edges { node { city } } } }", json!({}))
        .await;
    assert_eq!(a["members"]["edges"][0]["node"]["city"], "上海");
    assert_eq!(b["members"]["edges"][0]["node"]["city"], "北京");
}
